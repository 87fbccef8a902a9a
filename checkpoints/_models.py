"""Values read from and handed to the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

OperationStatus = Literal["pending", "running", "succeeded", "partial", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "completed", "failed", "skipped"]

TERMINAL_STATUSES: Final = frozenset({"succeeded", "partial", "failed", "cancelled"})

JSON = Any  # a value json.dumps accepts


def canonical_json(value: JSON) -> str:
    """The one serialisation used for hashing and storing: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_hash(value: JSON) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    user_id: str
    kind: str
    status: OperationStatus
    input: JSON
    input_hash: str
    idempotency_key: str | None
    result: JSON | None
    error: Mapping[str, Any] | None
    lease_token: int
    lease_owner: str | None
    lease_expires_at: float | None
    last_seq: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def is_leased(self, now: float) -> bool:
        """Whether a live owner holds the operation at `now` (epoch seconds)."""
        return (
            self.lease_owner is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )


@dataclass(frozen=True, slots=True)
class StepRecord:
    key: str
    position: int
    status: StepStatus
    attempts: int
    output: JSON | None
    error: Mapping[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: str
    data: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership: the fencing `token` goes with every write of its owner."""

    operation_id: str
    owner: str
    token: int
    expires_at: float


def lease_of(operation: Operation) -> Lease:
    """The lease an operation's row shows (e.g. one created leased to its creator)."""
    if operation.lease_owner is None or operation.lease_expires_at is None:
        raise ValueError(f"operation {operation.id} is not leased")
    return Lease(operation.id, operation.lease_owner, operation.lease_token,
                 operation.lease_expires_at)
