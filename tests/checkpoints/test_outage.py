"""The store through a PostgreSQL crash and restart (fault injection)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from checkpoints import CheckpointStore
from tests.servers import PostgresServer

pytestmark = pytest.mark.anyio


async def test_the_store_fails_clearly_while_postgres_is_down_and_recovers_after(
    postgres, pg_url: str
):
    """Kill the server: calls raise database errors (no hang); restart it: the same store
    (same pool, same LISTEN follower) works again without being rebuilt."""
    if not isinstance(postgres, PostgresServer):
        pytest.skip("TEST_DATABASE_URL points at a server these tests must not kill")
    store = CheckpointStore.from_url(pg_url)
    try:
        op, _ = await store.create_operation(user_id="u1", kind="k", input={})
        await store.append_event(op.id, "operation", {})
        await store.wait_for_events(op.id, 1, timeout=0)  # opens the LISTEN connection

        postgres.kill()
        try:
            with pytest.raises((sa.exc.DBAPIError, OSError)):
                await asyncio.wait_for(store.append_event(op.id, "step", {}), 30)
        finally:
            postgres.start()

        for _ in range(50):
            try:
                written = await store.append_event(op.id, "step", {})
                break
            except (sa.exc.DBAPIError, OSError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the store did not recover after the restart")
        assert written.seq == 2
        # A follower is served again, through a new LISTEN connection or polling.
        waiter = asyncio.create_task(store.wait_for_events(op.id, 2, timeout=30))
        await asyncio.sleep(0.3)
        other = CheckpointStore.from_url(pg_url, listen=False)
        try:
            await other.append_event(op.id, "result", {})
        finally:
            await other.close()
        events = await asyncio.wait_for(waiter, 30)
        assert [e.seq for e in events] == [3]
    finally:
        await store.close()
