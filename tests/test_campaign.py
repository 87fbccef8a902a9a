"""A short run of the load campaign's faults phase (`bench/load.py`): a few dozen
operations by careful clients across two instances, two of them killed mid-run. Only
the books are checked, never times."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.campaign.clients import campaign_client
from bench.load import Campaign, Cluster, check_ledger

pytestmark = pytest.mark.anyio


async def test_the_books_balance_after_instances_are_killed_under_load(
    pg_url: str, redis_url: str, tmp_path: Path
):
    cluster = Cluster(tmp_path, lease_ttl_s=2.0, pg_url=pg_url, redis_url=redis_url,
                      provider_delay="0.3,1.5")
    await cluster.start()
    try:
        async with campaign_client() as http:
            campaign = Campaign(cluster, http, follow_limit_s=120)
            users, _ = await campaign.phase("campaign", 8, 24, faults=True, kills=2,
                                            restarts=False, drain_s=150)
            ledger = await check_ledger(cluster, campaign.seen, users, "campaign")
    finally:
        await cluster.stop()
    assert len(cluster.killed) == 2
    assert ledger.facts["operations"] >= 24
    assert ledger.checks, "no check ran"
    assert ledger.clean, (ledger.checks, ledger.details)
