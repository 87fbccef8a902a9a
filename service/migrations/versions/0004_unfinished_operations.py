"""An index of the unfinished operations, by lease expiry: each instance looks for
orphaned runs (an owner gone, nobody following) every few seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNFINISHED = sa.text("status IN ('pending', 'running')")


def upgrade() -> None:
    op.create_index("ix_operations_unfinished", "operations", ["lease_expires_at"],
                    postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)


def downgrade() -> None:
    op.drop_index("ix_operations_unfinished", "operations")
