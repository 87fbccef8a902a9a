"""PostgreSQL's writes: its INSERT, and each fenced write as one statement (one round
trip, autocommit)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from ._models import JSON, Lease, StepRecord, canonical_json
from ._notify import CHANNEL
from ._write import STEP_COLUMNS, STEP_TYPES, FencedWrite, Written, planned


class PgWrites:
    """The store's dialect-specific writes on PostgreSQL."""

    def __init__(self, autocommit: AsyncEngine) -> None:
        self._autocommit = autocommit

    def insert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    async def write(self, write: FencedWrite) -> Written:
        stmt = _statement(
            fenced=write.token is not None,
            op_columns=tuple(sorted(name for name in write.sets if name != "updated_at")),
            with_step=write.step is not None,
            with_event=write.event is not None,
            with_then=write.then is not None,
            with_then_step=write.then is not None and write.then[0] is not None,
        )
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(stmt, _parameters(write))).first()
        if row is None:
            raise write.refused()
        return Written(row.seq, bool(row.cancel_requested), bool(row.then_written))

    async def plan(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord] | None:
        # The row lock of the operation makes a takeover wait for this insert's commit.
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(_PLAN, {
                "operation_id": lease.operation_id, "token": lease.token,
                "keys": list(keys), "positions": list(range(len(keys))),
            })).all()
        return planned(rows)


_PLAN: Final = sa.text(
    "WITH op AS (SELECT id FROM operations WHERE id = :operation_id "
    "AND lease_token = :token FOR UPDATE) "
    "INSERT INTO operation_steps (operation_id, key, position, status, attempts) "
    "SELECT op.id, step.key, step.position, 'pending', 0 FROM op, "
    "unnest(CAST(:keys AS text[]), CAST(:positions AS integer[])) AS step(key, position) "
    "ON CONFLICT (operation_id, key) DO UPDATE SET position = EXCLUDED.position "
    f"RETURNING {STEP_COLUMNS}"
).columns(*STEP_TYPES)


def _parameters(write: FencedWrite) -> dict[str, Any]:
    params: dict[str, Any] = {"op_id": write.operation_id, "now": write.now}
    if write.token is not None:
        params["token"] = write.token
    for name in ("status", "finished_at", "lease_owner", "lease_expires_at"):
        if name in write.sets:
            params[f"op_{name}"] = write.sets[name]
    for name in ("result", "error"):
        if name in write.sets:
            params[f"op_{name}"] = _json_or_none(write.sets[name])
    if write.step is not None:
        params.update(_step_parameters("s", write.step))
    if write.event is not None:
        params.update(e_type=write.event[0], e_data=canonical_json(dict(write.event[1])))
    if write.then is not None:
        step, (type, data) = write.then
        if step is not None:
            params.update(_step_parameters("t", step))
        params.update(t_e_type=type, t_e_data=canonical_json(dict(data)),
                      then_unless_cancelled=write.then_unless_cancelled)
    return params


def _step_parameters(prefix: str, step: StepRecord) -> dict[str, Any]:
    return {
        f"{prefix}_key": step.key, f"{prefix}_position": step.position,
        f"{prefix}_status": step.status, f"{prefix}_attempts": step.attempts,
        f"{prefix}_output": _json_or_none(step.output),
        f"{prefix}_error": _json_or_none(step.error),
        f"{prefix}_started_at": step.started_at, f"{prefix}_finished_at": step.finished_at,
    }


def _json_or_none(value: JSON | None) -> str | None:
    return None if value is None else canonical_json(value)


def _upsert_step(prefix: str, condition: str = "") -> str:
    p = prefix
    return (
        "INSERT INTO operation_steps (operation_id, key, position, status, "
        "attempts, output, error, started_at, finished_at) "
        f"SELECT :op_id, :{p}_key, :{p}_position, :{p}_status, :{p}_attempts, "
        f"CAST(:{p}_output AS jsonb), CAST(:{p}_error AS jsonb), :{p}_started_at, "
        f":{p}_finished_at FROM op {condition} ON CONFLICT (operation_id, key) DO UPDATE SET "
        "status = EXCLUDED.status, attempts = EXCLUDED.attempts, output = EXCLUDED.output, "
        "error = EXCLUDED.error, started_at = EXCLUDED.started_at, "
        "finished_at = EXCLUDED.finished_at"
    )


@cache
def _statement(
    *, fenced: bool, op_columns: tuple[str, ...], with_step: bool, with_event: bool,
    with_then: bool, with_then_step: bool,
) -> sa.TextClause:
    """One statement for a whole fenced write: the operation row is the fence (and hands
    out the events' sequence numbers under its row lock); step and event rows are
    inserted only when the fence let the update through. The `then` step (if any) and
    event (a next step's start; the terminal event) follow the first ones, unless
    `then_unless_cancelled` and a cancel was requested: the row lock keeps
    `cancel_requested` the same for the whole statement."""
    casts = {"result": "CAST(:op_result AS jsonb)", "error": "CAST(:op_error AS jsonb)"}
    sets = ["updated_at = :now"]
    sets += [f"{name} = {casts.get(name, ':op_' + name)}" for name in op_columns]
    then_ok = "NOT (CAST(:then_unless_cancelled AS boolean) AND cancel_requested)"
    added = []
    if with_event:
        added.append("1")
    if with_then:
        added.append(f"CASE WHEN {then_ok} THEN 1 ELSE 0 END")
    if added:
        sets.append(f"event_seq = event_seq + {' + '.join(added)}")
    where = "id = :op_id" + (" AND lease_token = :token" if fenced else "")
    returned = "event_seq, cancel_requested, " + (then_ok if with_then else "false")
    parts = [
        f"op AS (UPDATE operations SET {', '.join(sets)} WHERE {where} "
        f"RETURNING {returned} AS then_ok)"
    ]
    if with_step:
        parts.append(f"st AS ({_upsert_step('s')})")
    if with_then_step:
        parts.append(f"st2 AS ({_upsert_step('t', 'WHERE op.then_ok')})")
    if with_event:
        # The first event's number is the last one handed out unless `then` took it.
        parts.append(
            "ev AS (INSERT INTO operation_events (operation_id, seq, type, data, created_at) "
            "SELECT :op_id, event_seq - CASE WHEN op.then_ok THEN 1 ELSE 0 END, :e_type, "
            "CAST(:e_data AS jsonb), :now FROM op)"
        )
    if with_then:
        parts.append(
            "ev2 AS (INSERT INTO operation_events (operation_id, seq, type, data, created_at) "
            "SELECT :op_id, event_seq, :t_e_type, CAST(:t_e_data AS jsonb), :now FROM op "
            "WHERE op.then_ok)"
        )
    if with_event or with_then:
        wrote = "true" if with_event else "op.then_ok"
        final = (
            f"SELECT CASE WHEN {wrote} THEN op.event_seq END AS seq, op.cancel_requested "
            "AS cancel_requested, op.then_ok AS then_written, CASE WHEN "
            f"{wrote} THEN pg_notify('{CHANNEL}', :op_id || '/' || op.event_seq) END FROM op"
        )
    else:
        final = (
            "SELECT CAST(NULL AS integer) AS seq, op.cancel_requested AS cancel_requested, "
            "op.then_ok AS then_written FROM op"
        )
    return sa.text("WITH " + ", ".join(parts) + " " + final)
