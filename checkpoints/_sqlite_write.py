"""SQLite's writes: its INSERT, and each fenced write as *one statement*.

SQLite has no data-modifying CTEs, so the one statement PostgreSQL runs (`_pg_write.py`)
becomes an INSERT into a per-connection TEMP view, `checkpoint_write`, whose INSTEAD OF
trigger applies the whole write: it checks the fence, appends the event(s), upserts the
step row(s) — a completion and the next step's start go together — and updates the
operation's row. `install()` creates the view and its trigger on every new
connection (see `_engine.py`); nothing of it is stored in the database file.

One statement outside `BEGIN` is one implicit transaction: atomic, and it takes the write
lock when it starts (waiting for it under the busy timeout, like `BEGIN IMMEDIATE`), so a
write costs one statement instead of BEGIN, three statements and COMMIT. The answer comes
back through RETURNING, whose subqueries see the operation's row as the trigger left it;
a refused fence ends the trigger with `RAISE(IGNORE)`, which changes nothing and returns
no row, the same answer as PostgreSQL's UPDATE that matched nothing. A plan's steps are
one fenced INSERT … SELECT as well. (RETURNING needs SQLite 3.35 or newer.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ._models import JSON, Lease, StepRecord
from ._write import STEP_COLUMNS, STEP_TYPES, FencedWrite, Written, planned

#: The operation columns a write may set besides `updated_at` (see `CheckpointStore._write`).
_OPERATION_COLUMNS: Final = (
    "status", "result", "error", "finished_at", "lease_owner", "lease_expires_at",
)
#: The step columns a write sets (all of a step's columns but its identity).
_STEP_COLUMNS: Final = tuple(c.name for c in STEP_TYPES if c.name not in ("key", "position"))


def _set_if_given(column: str) -> str:
    # `json_type` tells an absent key (leave the column alone) from a JSON null (set NULL).
    return (
        f"{column} = CASE WHEN json_type(NEW.sets, '$.{column}') IS NULL THEN {column} "
        f"ELSE json_extract(NEW.sets, '$.{column}') END"
    )


def _upsert_step(slot: str, condition: str) -> str:
    """Insert or update the step row carried as JSON in the view's column `slot`."""
    values = ", ".join(
        f"json_extract(NEW.{slot}, '$.{name}')" for name in ("key", "position", *_STEP_COLUMNS)
    )
    return (
        "INSERT INTO operation_steps (operation_id, key, position, "
        f"{', '.join(_STEP_COLUMNS)}) SELECT NEW.operation_id, {values} "
        f"WHERE NEW.{slot} IS NOT NULL AND {condition} "
        "ON CONFLICT (operation_id, key) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _STEP_COLUMNS)
        + "; "
    )


def _append_event(slot: str, offset: str, condition: str) -> str:
    """Append the event carried as `[type, data]` in the view's column `slot`."""
    return (
        "INSERT INTO operation_events (operation_id, seq, type, data, created_at) "
        f"SELECT NEW.operation_id, event_seq + {offset}, json_extract(NEW.{slot}, '$[0]'), "
        f"json_extract(NEW.{slot}, '$[1]'), NEW.now FROM operations "
        f"WHERE id = NEW.operation_id AND NEW.{slot} IS NOT NULL AND {condition}; "
    )


#: Whether the write's `then` part applies (it never runs when a cancel is requested and
#: the write asked for that). Nothing in the trigger changes `cancel_requested`, so every
#: statement of the trigger gets the same answer.
_THEN: Final = (
    "(NOT NEW.then_unless_cancelled OR NOT (SELECT cancel_requested FROM operations "
    "WHERE id = NEW.operation_id))"
)

#: Run once per connection. The trigger's statements run in order inside the INSERT's
#: implicit transaction: the events' numbers are read from the operation's row before the
#: UPDATE at the end moves it on.
INSTALL: Final = (
    "CREATE TEMP VIEW IF NOT EXISTS checkpoint_write "
    "(operation_id, token, now, sets, step, event, then_step, then_event, "
    "then_unless_cancelled) "
    "AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    "CREATE TEMP TRIGGER IF NOT EXISTS checkpoint_write_apply "
    "INSTEAD OF INSERT ON checkpoint_write BEGIN "
    "SELECT RAISE(IGNORE) WHERE NOT EXISTS (SELECT 1 FROM operations "
    "WHERE id = NEW.operation_id AND (NEW.token IS NULL OR lease_token = NEW.token)); "
    + _append_event("event", "1", "1")
    + _append_event("then_event", "1 + (NEW.event IS NOT NULL)", _THEN)
    + _upsert_step("step", "1")
    + _upsert_step("then_step", _THEN)
    + "UPDATE operations SET updated_at = NEW.now, event_seq = event_seq "
    f"+ (NEW.event IS NOT NULL) + (NEW.then_event IS NOT NULL AND {_THEN}), "
    + ", ".join(_set_if_given(name) for name in _OPERATION_COLUMNS)
    + " WHERE id = NEW.operation_id; END",
)

_WRITE: Final = sa.text(
    "INSERT INTO checkpoint_write (operation_id, token, now, sets, step, event, then_step, "
    "then_event, then_unless_cancelled) VALUES (:operation_id, :token, :now, :sets, :step, "
    ":event, :then_step, :then_event, :then_unless_cancelled) "
    "RETURNING (SELECT event_seq FROM operations WHERE id = :operation_id) AS seq, "
    "(SELECT cancel_requested FROM operations WHERE id = :operation_id) AS cancel_requested, "
    "then_event IS NOT NULL AND (NOT then_unless_cancelled OR NOT (SELECT cancel_requested "
    "FROM operations WHERE id = :operation_id)) AS then_written"
)


_PLAN: Final = sa.text(
    "INSERT INTO operation_steps (operation_id, key, position, status, attempts) "
    "SELECT :operation_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "'pending', 0 FROM json_each(:steps) WHERE EXISTS (SELECT 1 FROM operations "
    "WHERE id = :operation_id AND lease_token = :token) "
    "ON CONFLICT (operation_id, key) DO UPDATE SET position = excluded.position "
    f"RETURNING {STEP_COLUMNS}"
).columns(*STEP_TYPES)


def install(dbapi_connection: Any) -> None:
    """Create this connection's `checkpoint_write` view and trigger."""
    cursor = dbapi_connection.cursor()
    try:
        for statement in INSTALL:
            cursor.execute(statement)
    finally:
        cursor.close()


class SqliteWrites:
    """The store's dialect-specific writes on SQLite."""

    def __init__(self, autocommit: AsyncEngine) -> None:
        """`autocommit`: the engine whose statements run in SQLite's own autocommit mode."""
        self._autocommit = autocommit
        processor = sa.DateTime(timezone=True).dialect_impl(autocommit.dialect).bind_processor(
            autocommit.dialect
        )
        assert processor is not None
        # Timestamps are stored as text; the column type knows the format it reads back.
        self._timestamp: Callable[[datetime], str] = processor

    def insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    async def write(self, write: FencedWrite) -> Written:
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(_WRITE, self._parameters(write))).first()
        if row is None:
            raise write.refused()
        wrote_event = write.event is not None or bool(row.then_written)
        seq = int(row.seq) if wrote_event else None
        return Written(seq, bool(row.cancel_requested), bool(row.then_written))

    async def plan(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord] | None:
        steps = json.dumps([[key, position] for position, key in enumerate(keys)])
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(_PLAN, {
                "operation_id": lease.operation_id, "token": lease.token, "steps": steps,
            })).all()
        return planned(rows)

    def _parameters(self, write: FencedWrite) -> dict[str, Any]:
        sets = {name: write.sets[name] for name in _OPERATION_COLUMNS if name in write.sets}
        for name in ("result", "error"):
            if name in sets:
                sets[name] = _json_text(sets[name])
        if sets.get("finished_at") is not None:
            sets["finished_at"] = self._timestamp(sets["finished_at"])
        then_step, then_event = write.then or (None, None)
        return {
            "operation_id": write.operation_id, "token": write.token,
            "now": self._timestamp(write.now), "sets": json.dumps(sets),
            "step": self._step(write.step), "event": _event(write.event),
            "then_step": self._step(then_step), "then_event": _event(then_event),
            "then_unless_cancelled": write.then_unless_cancelled,
        }

    def _step(self, step: StepRecord | None) -> str | None:
        if step is None:
            return None
        return json.dumps({
            "key": step.key, "position": step.position, "status": step.status,
            "attempts": step.attempts, "output": _json_text(step.output),
            "error": _json_text(step.error), "started_at": self._optional_time(step.started_at),
            "finished_at": self._optional_time(step.finished_at),
        })

    def _optional_time(self, value: datetime | None) -> str | None:
        return None if value is None else self._timestamp(value)


def _event(event: tuple[str, Mapping[str, Any]] | None) -> str | None:
    return None if event is None else json.dumps([event[0], json.dumps(dict(event[1]))])


def _json_text(value: JSON | None) -> str | None:
    """A JSON column's value as the text SQLAlchemy's JSON type stores (NULL for None)."""
    return None if value is None else json.dumps(value)
