"""Durable operations: step checkpoints, an event log, leases with fencing tokens, and a
runner that resumes a plan of steps from its first unfinished one.

Works on PostgreSQL (asyncpg) and SQLite (aiosqlite) through SQLAlchemy 2 async; knows
nothing of HTTP, Redis or providers.
"""

from ._engine import autocommit, create_engine
from ._errors import (
    CheckpointError,
    IdempotencyKeyReused,
    LeaseLost,
    LeaseUnavailable,
    OperationNotFound,
    is_connection_failure,
)
from ._models import (
    JSON,
    TERMINAL_STATUSES,
    Event,
    Lease,
    Operation,
    OperationStatus,
    StepRecord,
    StepStatus,
    canonical_json,
    input_hash,
    lease_of,
)
from ._run import Run
from ._runner import Runner
from ._schema import metadata, operation_events, operation_steps, operations
from ._steps import (
    INTERRUPTED,
    Outcome,
    Step,
    StepContext,
    StepWrapper,
    describe_error,
    is_retryable,
)
from ._store import CheckpointStore
from ._write import Written

__all__ = [
    "INTERRUPTED",
    "JSON",
    "TERMINAL_STATUSES",
    "CheckpointError",
    "CheckpointStore",
    "Event",
    "IdempotencyKeyReused",
    "Lease",
    "LeaseLost",
    "LeaseUnavailable",
    "Operation",
    "OperationNotFound",
    "OperationStatus",
    "Outcome",
    "Run",
    "Runner",
    "Step",
    "StepContext",
    "StepRecord",
    "StepStatus",
    "StepWrapper",
    "Written",
    "autocommit",
    "canonical_json",
    "create_engine",
    "describe_error",
    "input_hash",
    "is_connection_failure",
    "is_retryable",
    "lease_of",
    "metadata",
    "operation_events",
    "operation_steps",
    "operations",
]

