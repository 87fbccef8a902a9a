"""The three tables of the checkpoint store.

The Alembic migrations of the service create the same tables; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JSONType, nullable=False),
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("result", JSONType, nullable=True),
    sa.Column("error", JSONType, nullable=True),
    # Fencing: every lease acquisition increments the token; writes carry it.
    sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    # The last sequence number handed out in this operation's event log.
    sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    # Set by whoever asks to cancel; the owner sees it in the answer of its next write.
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("user_id", "idempotency_key", name="uq_operations_user_idempotency_key"),
)
sa.Index("ix_operations_user_created", operations.c.user_id, operations.c.created_at)
sa.Index("ix_operations_finished_at", operations.c.finished_at)
#: The unfinished operations by lease expiry: where orphaned runs are looked for.
sa.Index("ix_operations_unfinished", operations.c.lease_expires_at,
         postgresql_where=operations.c.status.in_(["pending", "running"]),
         sqlite_where=operations.c.status.in_(["pending", "running"]))

operation_steps = sa.Table(
    "operation_steps",
    metadata,
    sa.Column(
        "operation_id",
        sa.String(36),
        sa.ForeignKey("operations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output", JSONType, nullable=True),
    sa.Column("error", JSONType, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

operation_events = sa.Table(
    "operation_events",
    metadata,
    sa.Column(
        "operation_id",
        sa.String(36),
        sa.ForeignKey("operations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
