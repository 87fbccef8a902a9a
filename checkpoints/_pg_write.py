"""PostgreSQL's writes: its INSERT, and each fenced write as one statement (one round
trip, autocommit); a write with a `then` part as two, the second only when the first's
answer lets it through."""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from ._models import JSON, canonical_json
from ._notify import CHANNEL
from ._write import FencedWrite, Written


class PgWrites:
    """The store's dialect-specific writes on PostgreSQL."""

    def __init__(self, autocommit: AsyncEngine) -> None:
        self._autocommit = autocommit

    def insert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    async def write(self, write: FencedWrite) -> Written:
        written = await self._write_one(write.first())
        second = write.second()
        if second is None or (write.then_unless_cancelled and written.cancel_requested):
            return written
        then = await self._write_one(second)
        return Written(then.seq, then.cancel_requested, then_written=True)

    async def _write_one(self, write: FencedWrite) -> Written:
        stmt = _statement(
            fenced=write.token is not None,
            op_columns=tuple(sorted(name for name in write.sets if name != "updated_at")),
            with_step=write.step is not None,
            with_event=write.event is not None,
        )
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(stmt, _parameters(write))).first()
        if row is None:
            raise write.refused()
        return Written(row.seq, bool(row.cancel_requested))


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
    step = write.step
    if step is not None:
        params.update(
            s_key=step.key, s_position=step.position, s_status=step.status,
            s_attempts=step.attempts, s_output=_json_or_none(step.output),
            s_error=_json_or_none(step.error), s_started_at=step.started_at,
            s_finished_at=step.finished_at,
        )
    if write.event is not None:
        params.update(e_type=write.event[0], e_data=canonical_json(dict(write.event[1])))
    return params


def _json_or_none(value: JSON | None) -> str | None:
    return None if value is None else canonical_json(value)


@cache
def _statement(
    *, fenced: bool, op_columns: tuple[str, ...], with_step: bool, with_event: bool
) -> sa.TextClause:
    """One statement for a whole fenced write: the operation row is the fence (and hands
    out the event's sequence number under its row lock); step and event rows are
    inserted only when the fence let the update through."""
    casts = {"result": "CAST(:op_result AS jsonb)", "error": "CAST(:op_error AS jsonb)"}
    sets = ["updated_at = :now"]
    sets += [f"{name} = {casts.get(name, ':op_' + name)}" for name in op_columns]
    if with_event:
        sets.append("event_seq = event_seq + 1")
    where = "id = :op_id" + (" AND lease_token = :token" if fenced else "")
    parts = [
        f"op AS (UPDATE operations SET {', '.join(sets)} WHERE {where} "
        "RETURNING event_seq, cancel_requested)"
    ]
    if with_step:
        parts.append(
            "st AS (INSERT INTO operation_steps (operation_id, key, position, status, "
            "attempts, output, error, started_at, finished_at) "
            "SELECT :op_id, :s_key, :s_position, :s_status, :s_attempts, "
            "CAST(:s_output AS jsonb), CAST(:s_error AS jsonb), :s_started_at, :s_finished_at "
            "FROM op ON CONFLICT (operation_id, key) DO UPDATE SET "
            "status = EXCLUDED.status, attempts = EXCLUDED.attempts, output = EXCLUDED.output, "
            "error = EXCLUDED.error, started_at = EXCLUDED.started_at, "
            "finished_at = EXCLUDED.finished_at)"
        )
    if with_event:
        parts.append(
            "ev AS (INSERT INTO operation_events (operation_id, seq, type, data, created_at) "
            "SELECT :op_id, event_seq, :e_type, CAST(:e_data AS jsonb), :now FROM op "
            "RETURNING seq)"
        )
        final = (
            f"SELECT ev.seq AS seq, op.cancel_requested AS cancel_requested, "
            f"pg_notify('{CHANNEL}', :op_id || '/' || ev.seq) FROM ev, op"
        )
    else:
        final = (
            "SELECT CAST(NULL AS integer) AS seq, op.cancel_requested AS cancel_requested "
            "FROM op"
        )
    return sa.text("WITH " + ", ".join(parts) + " " + final)
