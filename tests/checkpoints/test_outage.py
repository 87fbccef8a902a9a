"""The store through a PostgreSQL crash and restart (fault injection)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from checkpoints import CheckpointStore, Runner, Step, StepContext, is_connection_failure
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


async def test_a_step_finished_while_postgres_restarts_is_checkpointed_not_run_again(
    postgres, pg_url: str
):
    """The server goes down as a (paid) step returns: its checkpoint waits for the
    database and lands once it is back; the step runs once, the log has no gap or twin."""
    if not isinstance(postgres, PostgresServer):
        pytest.skip("TEST_DATABASE_URL points at a server these tests must not kill")
    store = CheckpointStore.from_url(pg_url)
    calls: list[str] = []
    restarted: list[asyncio.Task[None]] = []

    async def render(_ctx: StepContext) -> dict[str, str]:
        calls.append("render")
        postgres.kill()
        restarted.append(asyncio.create_task(_start_later(postgres, 1.0)))
        return {"image": "paid-for"}

    async def record(ctx: StepContext) -> dict[str, str]:
        calls.append("record")
        return {"recorded": ctx.outputs["render"]["image"]}

    try:
        op, _ = await store.create_operation(user_id="u1", kind="k", input={})
        runner = Runner(store, owner="outage", lease_ttl=30)
        async with runner.claim(op.id) as run:
            await run.plan([Step("render", render), Step("record", record)])
            outcome = await asyncio.wait_for(run.execute(), 60)
            await run.finish("succeeded", result=outcome.outputs["record"],
                             event=("result", {}))
        await restarted[0]
        assert calls == ["render", "record"]
        finished = await store.get_operation(op.id)
        assert finished.status == "succeeded"
        events = await store.read_events(op.id, 0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        steps = [(e.data["step"], e.data["status"]) for e in events if e.type == "step"]
        assert steps == [("render", "started"), ("render", "completed"),
                         ("record", "started"), ("record", "completed")]
    finally:
        await store.close()


async def _start_later(postgres: PostgresServer, delay: float) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(postgres.start)


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "unreachable"), [
    ("57P01", True),   # terminating connection due to administrator command
    ("57P03", True),   # the database system is shutting down / starting up
    ("08003", True),   # connection does not exist
    ("23505", False),  # a unique violation is the statement's fault
    ("42P01", False),  # so is an unknown table
])
def test_connection_failures_are_told_by_their_sqlstate(sqlstate: str, unreachable: bool):
    exc = sa.exc.DBAPIError("SELECT 1", {}, _DriverError("driver says no", sqlstate))
    assert is_connection_failure(exc) is unreachable
