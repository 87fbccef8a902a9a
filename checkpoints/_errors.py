"""Errors of the checkpoints package.

    CheckpointError
    ├── OperationNotFound      no operation with that id (for that user)
    ├── IdempotencyKeyReused   the key names an operation created from another input
    ├── LeaseUnavailable       another owner holds a live lease on the operation
    └── LeaseLost              a newer owner took the operation over: the write was refused
"""

from __future__ import annotations


class CheckpointError(Exception):
    """Root of every error this package raises."""


class OperationNotFound(CheckpointError):
    def __init__(self, operation_id: str) -> None:
        super().__init__(f"operation {operation_id} not found")
        self.operation_id = operation_id


class IdempotencyKeyReused(CheckpointError):
    def __init__(self, key: str, operation_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for operation {operation_id} "
            "with a different input"
        )
        self.key = key
        self.operation_id = operation_id


class LeaseUnavailable(CheckpointError):
    def __init__(self, operation_id: str, owner: str | None, expires_at: float | None) -> None:
        super().__init__(f"operation {operation_id} is leased by {owner}")
        self.operation_id = operation_id
        self.owner = owner
        self.expires_at = expires_at


class LeaseLost(CheckpointError):
    def __init__(self, operation_id: str, token: int) -> None:
        super().__init__(
            f"lease {token} on operation {operation_id} is no longer current: write refused"
        )
        self.operation_id = operation_id
        self.token = token
