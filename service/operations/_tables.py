"""The service's own tables: accounts, the credit ledger and thumbnails.

The checkpoint tables belong to `checkpoints`; the Alembic migrations create both.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

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
# retried reservation or refund can never be applied twice.
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

# Heatmaps by image content: an identical image within the retention window is answered
# from here without a provider call.
heatmaps = sa.Table(
    "heatmaps",
    metadata,
    sa.Column("image_sha256", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("heatmap_key", sa.String(512), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Video analyses by YouTube video id, reused for a configurable time.
video_analyses = sa.Table(
    "video_analyses",
    metadata,
    sa.Column("video_id", sa.String(11), primary_key=True),
    sa.Column("analytics", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
