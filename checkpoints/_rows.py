"""Rows of the store's tables as the package's values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ._models import Operation, StepRecord


def aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything this store writes is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def operation_of(row: sa.Row[Any]) -> Operation:
    return Operation(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        status=row.status,
        input=row.input,
        input_hash=row.input_hash,
        idempotency_key=row.idempotency_key,
        result=row.result,
        error=row.error,
        lease_token=int(row.lease_token),
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        last_seq=int(row.event_seq),
        cancel_requested=bool(row.cancel_requested),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        finished_at=None if row.finished_at is None else aware(row.finished_at),
    )


def step_of(row: sa.Row[Any]) -> StepRecord:
    return StepRecord(
        key=row.key,
        position=int(row.position),
        status=row.status,
        attempts=int(row.attempts),
        output=row.output,
        error=row.error,
        started_at=None if row.started_at is None else aware(row.started_at),
        finished_at=None if row.finished_at is None else aware(row.finished_at),
    )
