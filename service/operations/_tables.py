"""The operations' own tables: the heatmap and video-analysis caches.

The checkpoint tables belong to `checkpoints`, the books (accounts, credit ledger,
thumbnails) to `service.accounts`; the Alembic migrations create them all.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

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
