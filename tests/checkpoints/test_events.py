"""The event log: gap-free sequence numbers and followers woken across processes."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from checkpoints import CheckpointStore
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.anyio


async def test_concurrent_appenders_get_unique_consecutive_seqs(db_url: str):
    """60 appends from three engines at once → seqs 1..60, each exactly once, in order."""
    stores = [CheckpointStore.from_url(db_url) for _ in range(3)]
    try:
        op, _ = await stores[0].create_operation(user_id="u1", kind="k", input={})
        lease = await stores[0].acquire_lease(op.id, "owner", ttl=60)

        async def append(i: int) -> int:
            # Fenced and unfenced appenders interleave on the same log.
            fence = lease if i % 2 else op.id
            written = await stores[i % 3].append_event(fence, "progress", {"i": i})
            assert written.seq is not None
            return written.seq

        seqs = await asyncio.gather(*(append(i) for i in range(60)))
        assert sorted(seqs) == list(range(1, 61))
        events = await stores[1].read_events(op.id)
        assert [e.seq for e in events] == list(range(1, 61))
        assert sorted(e.data["i"] for e in events) == list(range(60))
        assert [e.seq for e in await stores[2].read_events(op.id, after=57)] == [58, 59, 60]
        assert (await stores[0].get_operation(op.id)).last_seq == 60
    finally:
        for store in stores:
            await store.close()


async def test_a_waiting_follower_in_this_process_is_woken_by_an_append(
    store: CheckpointStore,
):
    """wait_for_events returns the new events once they are appended."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    assert await store.wait_for_events(op.id, 0, timeout=0) == []
    waiter = asyncio.create_task(store.wait_for_events(op.id, 0, timeout=60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.append_event(op.id, "progress", {"n": 1})
    events = await asyncio.wait_for(waiter, 10)
    assert [(e.seq, e.type) for e in events] == [(1, "progress")]


async def test_a_follower_in_another_process_is_woken_for_new_events(db_url: str):
    """A child process waits on the log; an append here wakes it. On PostgreSQL the
    child never polls (a one-hour poll interval), so only NOTIFY can wake it."""
    store = CheckpointStore.from_url(db_url)
    try:
        op, _ = await store.create_operation(user_id="u1", kind="k", input={})
        await store.append_event(op.id, "operation", {})
        poll = "3600" if db_url.startswith("postgresql") else "0.1"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.checkpoints.child", "follow", db_url, op.id, "1", poll,
            cwd=ROOT, env=child_env(), stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
            await store.append_event(op.id, "step", {"status": "started"})
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert json.loads(line) == [[2, "step"]]
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
    finally:
        await store.close()
