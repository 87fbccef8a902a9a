"""Accounts with tiers and credits, the credit ledger, thumbnails.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("credits_remaining", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("credits_remaining >= 0", name="ck_accounts_credits_not_negative"),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("entry", sa.String(64), nullable=False),
        sa.Column("delta", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("operation_id", "entry", name="uq_credit_ledger_operation_entry"),
    )
    op.create_index("ix_credit_ledger_user", "credit_ledger", ["user_id"])
    op.create_table(
        "thumbnails",
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
    op.create_index("ix_thumbnails_user_created", "thumbnails", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_thumbnails_user_created", "thumbnails")
    op.drop_table("thumbnails")
    op.drop_index("ix_credit_ledger_user", "credit_ledger")
    op.drop_table("credit_ledger")
    op.drop_table("accounts")
