"""PostgreSQL's fenced write as one statement (one round trip, autocommit)."""

from __future__ import annotations

from functools import cache

import sqlalchemy as sa

from ._notify import CHANNEL


@cache
def pg_write_statement(
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
