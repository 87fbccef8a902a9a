"""Errors of the checkpoints package.

    CheckpointError
    ├── OperationNotFound      no operation with that id (for that user)
    ├── IdempotencyKeyReused   the key names an operation created from another input
    ├── LeaseUnavailable       another owner holds a live lease on the operation
    └── LeaseLost              a newer owner took the operation over: the write was refused
"""

from __future__ import annotations

import sqlalchemy as sa


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


#: SQLSTATE classes and codes that say the server cannot be talked to right now (as
#: opposed to a statement it refuses): connection exceptions (08…), and an administrator
#: or crash shutdown or a server that is starting or stopping (57P01–57P03).
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_connection_failure(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (not that a statement is wrong):
    SQLAlchemy's operational and interface errors, a connection it invalidated, a socket
    error of the driver, a SQLSTATE of a lost or refused connection, or no pooled
    connection in time."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc.orig, OSError):
            return True
        cause = exc.orig.__cause__ if exc.orig is not None else None
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_CONNECTION_SQLSTATES)
    # asyncpg lets a socket that drops in the middle of a query surface as it is.
    return isinstance(exc, ConnectionError)
