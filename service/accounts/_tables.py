"""The service's own books: accounts, the credit ledger and thumbnails.

With ViewBait's books (`ACCOUNTS_BACKEND=viewbait`) only the credit ledger is used: it
records each movement the service made through ViewBait's credit functions, under the
same idempotency key. The Alembic migrations create these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("credits_remaining", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("credits_remaining >= 0", name="ck_accounts_credits_not_negative"),
)

# One row per credit movement of an operation; `(operation_id, entry)` is unique, so a
# retried reservation or refund can never be applied twice. `entry` is the movement's
# idempotency key (`op:{operation id}:reserve`, `…:refund`, `…:reserve:2`).
credit_ledger = sa.Table(
    "credit_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("operation_id", sa.String(36), nullable=True),
    sa.Column("entry", sa.String(64), nullable=False),
    sa.Column("delta", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("operation_id", "entry", name="uq_credit_ledger_operation_entry"),
)
sa.Index("ix_credit_ledger_user", credit_ledger.c.user_id)

thumbnails = sa.Table(
    "thumbnails",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("operation_id", sa.String(36), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("image_key", sa.String(512), nullable=False),
    sa.Column("image_400w_key", sa.String(512), nullable=True),
    sa.Column("image_800w_key", sa.String(512), nullable=True),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("resolution", sa.String(8), nullable=False),
    sa.Column("aspect_ratio", sa.String(8), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_thumbnails_user_created", thumbnails.c.user_id, thumbnails.c.created_at)
