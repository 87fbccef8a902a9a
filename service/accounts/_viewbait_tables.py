"""ViewBait's own tables in `public`, as far as the service reads or writes them (the
columns of VIEWBAIT.md). The service never creates or alters them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = sa.MetaData(schema="public")
Uuid = UUID(as_uuid=False)

user_subscriptions = sa.Table(
    "user_subscriptions",
    metadata,
    sa.Column("user_id", Uuid),
    sa.Column("product_id", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("credits_total", sa.Integer),
    sa.Column("credits_remaining", sa.Integer),
)

subscription_tiers = sa.Table(
    "subscription_tiers",
    metadata,
    sa.Column("tier_name", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("test_product_id", sa.Text),
    sa.Column("live_product_id", sa.Text),
    sa.Column("credits_per_month", sa.Integer),
    sa.Column("allowed_resolutions", ARRAY(sa.Text)),
    sa.Column("max_variations", sa.Integer),
    sa.Column("has_watermark", sa.Boolean),
    sa.Column("is_active", sa.Boolean),
)

subscription_settings = sa.Table(
    "subscription_settings",
    metadata,
    sa.Column("key", sa.Text),
    sa.Column("value", sa.Text),
)

thumbnails = sa.Table(
    "thumbnails",
    metadata,
    sa.Column("id", Uuid, primary_key=True),
    sa.Column("user_id", Uuid),
    sa.Column("project_id", Uuid),
    sa.Column("title", sa.Text),
    sa.Column("image_url", sa.Text),
    sa.Column("thumbnail_400w_url", sa.Text),
    sa.Column("thumbnail_800w_url", sa.Text),
    sa.Column("style", sa.Text),
    sa.Column("palette", sa.Text),
    sa.Column("emotion", sa.Text),
    sa.Column("aspect_ratio", sa.Text),
    sa.Column("resolution", sa.Text),
    sa.Column("has_watermark", sa.Boolean),
    sa.Column("liked", sa.Boolean),
    sa.Column("is_public", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)
