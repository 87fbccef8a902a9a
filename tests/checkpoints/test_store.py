"""Operations, idempotency keys, leases and fencing, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from checkpoints import (
    CheckpointStore,
    IdempotencyKeyReused,
    LeaseLost,
    LeaseUnavailable,
    OperationNotFound,
    operations,
)
from tests.clock import FakeClock

pytestmark = pytest.mark.anyio


async def test_create_returns_the_same_operation_for_a_repeated_key(store: CheckpointStore):
    """Same key and same input → the existing operation, not a new one."""
    first, created = await store.create_operation(
        user_id="u1", kind="k", input={"title": "a"}, idempotency_key="key-1"
    )
    again, created_again = await store.create_operation(
        user_id="u1", kind="k", input={"title": "a"}, idempotency_key="key-1"
    )
    assert created
    assert not created_again
    assert again.id == first.id
    assert first.status == "pending"
    assert first.last_seq == 0


async def test_a_key_reused_with_another_input_is_refused(store: CheckpointStore):
    """Same key, different input (or kind) → IdempotencyKeyReused naming the operation."""
    first, _ = await store.create_operation(
        user_id="u1", kind="k", input={"title": "a"}, idempotency_key="key-1"
    )
    with pytest.raises(IdempotencyKeyReused) as info:
        await store.create_operation(
            user_id="u1", kind="k", input={"title": "b"}, idempotency_key="key-1"
        )
    assert info.value.operation_id == first.id
    with pytest.raises(IdempotencyKeyReused):
        await store.create_operation(
            user_id="u1", kind="other", input={"title": "a"}, idempotency_key="key-1"
        )


async def test_keys_are_scoped_per_user(store: CheckpointStore):
    """Two users may use the same key for different operations."""
    a, _ = await store.create_operation(user_id="u1", kind="k", input={}, idempotency_key="k")
    b, created = await store.create_operation(
        user_id="u2", kind="k", input={"x": 1}, idempotency_key="k"
    )
    assert created
    assert a.id != b.id


async def test_concurrent_creates_with_one_key_make_exactly_one_row(db_url: str):
    """A race of creators on one key (separate engines, like separate instances)."""
    stores = [CheckpointStore.from_url(db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                stores[i % 4].create_operation(
                    user_id="u1", kind="k", input={"n": 1}, idempotency_key="race"
                )
                for i in range(24)
            )
        )
        assert len({op.id for op, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        async with stores[0].engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(operations))
        assert count == 1
    finally:
        for store in stores:
            await store.close()


async def test_get_operation_is_scoped_to_its_user(store: CheckpointStore):
    """Another user's id is not found, like an unknown id."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    assert (await store.get_operation(op.id, user_id="u1")).id == op.id
    with pytest.raises(OperationNotFound):
        await store.get_operation(op.id, user_id="u2")
    with pytest.raises(OperationNotFound):
        await store.get_operation("no-such-operation")


async def test_a_lease_is_taken_only_when_free_or_expired(
    store: CheckpointStore, clock: FakeClock
):
    """A live lease keeps others out; once it expires a newer, larger token wins."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    a = await store.acquire_lease(op.id, "a", ttl=10)
    with pytest.raises(LeaseUnavailable) as info:
        await store.acquire_lease(op.id, "b", ttl=10)
    assert info.value.owner == "a"
    clock.advance(5)
    a = await store.renew_lease(a, ttl=10)  # now lives until +15
    clock.advance(9)
    with pytest.raises(LeaseUnavailable):
        await store.acquire_lease(op.id, "b", ttl=10)
    clock.advance(2)
    b = await store.acquire_lease(op.id, "b", ttl=10)
    assert b.token > a.token
    assert await store.release_lease(b)
    c = await store.acquire_lease(op.id, "c", ttl=10)  # released: free at once
    assert c.token > b.token


async def test_a_zombie_owner_can_write_nothing(store: CheckpointStore, clock: FakeClock):
    """After a takeover, every write of the old owner raises LeaseLost and stores nothing."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    old = await store.acquire_lease(op.id, "old", ttl=1)
    steps = await store.plan_steps(old, ["s1", "s2"])
    await store.append_event(old, "operation", {"n": 1})
    clock.advance(2)
    new = await store.acquire_lease(op.id, "new", ttl=30)

    running = dataclasses.replace(steps[0], status="completed", attempts=1, output={"x": 1})
    with pytest.raises(LeaseLost):
        await store.record_step(old, running, event=("step", {"step": "s1"}))
    with pytest.raises(LeaseLost):  # a completion with the next step's start
        await store.record_step(
            old, running, event=("step", {"step": "s1"}),
            then=(dataclasses.replace(steps[1], status="running"), ("step", {"step": "s2"})),
        )
    with pytest.raises(LeaseLost):
        await store.append_event(old, "progress", {})
    with pytest.raises(LeaseLost):
        await store.finish_operation(old, "succeeded", result={"x": 1}, event=("result", {}))
    with pytest.raises(LeaseLost):
        await store.set_status(old, "running")
    with pytest.raises(LeaseLost):
        await store.renew_lease(old, ttl=30)
    with pytest.raises(LeaseLost):
        await store.plan_steps(old, ["s3"])
    assert not await store.release_lease(old)

    assert [s.status for s in await store.get_steps(op.id)] == ["pending", "pending"]
    assert [e.seq for e in await store.read_events(op.id)] == [1]
    current = await store.get_operation(op.id)
    assert current.status == "pending"
    assert current.result is None
    assert current.lease_owner == "new"
    assert current.lease_token == new.token
    # The new owner writes normally.
    await store.record_step(new, running, event=("step", {"step": "s1"}))
    assert (await store.get_steps(op.id))[0].output == {"x": 1}


async def test_planning_again_returns_the_recorded_steps_as_stored(store: CheckpointStore):
    """A plan's one statement returns its steps as the database holds them: a step an
    earlier owner completed keeps its output, attempts and times; a new one is pending;
    a known one takes its new position; one outside the plan is left alone."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    first = await store.acquire_lease(op.id, "a", ttl=10)
    s1, _s2, _old = await store.plan_steps(first, ["s1", "s2", "old"])
    done = dataclasses.replace(s1, status="completed", attempts=1, output={"n": [1, "x"]},
                               started_at=store.now(), finished_at=store.now())
    await store.record_step(first, done, event=("step", {"step": "s1"}))
    await store.release_lease(first)
    second = await store.acquire_lease(op.id, "b", ttl=10)
    planned = await store.plan_steps(second, ["new", "s1", "s2"])
    assert [(s.key, s.position, s.status) for s in planned] == [
        ("new", 0, "pending"), ("s1", 1, "completed"), ("s2", 2, "pending")
    ]
    stored = {s.key: s for s in await store.get_steps(op.id)}
    assert planned == [stored["new"], stored["s1"], stored["s2"]]
    assert planned[1].output == {"n": [1, "x"]}
    assert planned[1].finished_at == done.finished_at
    assert stored["old"].status == "pending"


async def test_a_completion_and_the_next_start_are_written_together(store: CheckpointStore):
    """A write with a `then` part records both steps and numbers both events in order; with
    `then_unless_cancelled` a requested cancel leaves the second step untouched."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    lease = await store.acquire_lease(op.id, "a", ttl=10)
    s1, s2, s3 = await store.plan_steps(lease, ["s1", "s2", "s3"])
    done = dataclasses.replace(s1, status="completed", attempts=1, output={"n": 1})
    started = dataclasses.replace(s2, status="running", attempts=1)
    written = await store.record_step(
        lease, done, event=("step", {"step": "s1"}),
        then=(started, ("step", {"step": "s2"})), then_unless_cancelled=True,
    )
    assert (written.seq, written.then_written, written.cancel_requested) == (2, True, False)

    assert await store.request_cancel(op.id)
    written = await store.record_step(
        lease, dataclasses.replace(started, status="completed"), event=("step", {"step": "s2"}),
        then=(dataclasses.replace(s3, status="running", attempts=1), ("step", {"step": "s3"})),
        then_unless_cancelled=True,
    )
    assert (written.seq, written.then_written, written.cancel_requested) == (3, False, True)
    steps = await store.get_steps(op.id)
    assert [(s.status, s.attempts) for s in steps] == [
        ("completed", 1), ("completed", 1), ("pending", 0),
    ]
    assert steps[0].output == {"n": 1}
    events = await store.read_events(op.id)
    assert [(e.seq, e.data["step"]) for e in events] == [(1, "s1"), (2, "s2"), (3, "s2")]
    assert (await store.get_operation(op.id)).last_seq == 3


async def test_finish_stores_the_terminal_state_and_event_together(store: CheckpointStore):
    """finish_operation writes status, result and the terminal event in one go."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    lease = await store.acquire_lease(op.id, "a", ttl=10)
    written = await store.finish_operation(
        lease, "succeeded", result={"n": 2}, event=("result", {"n": 2})
    )
    assert written.seq == 1
    done = await store.get_operation(op.id)
    assert done.lease_owner is None  # released in the same write
    assert done.status == "succeeded"
    assert done.result == {"n": 2}
    assert done.finished_at is not None
    assert done.is_finished
    with pytest.raises(ValueError, match="terminal"):
        await store.finish_operation(lease, "running")


async def test_cancel_requests_reach_the_owner_through_its_next_write(store: CheckpointStore):
    """request_cancel sets a flag that the owner's next fenced write reports."""
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    lease = await store.acquire_lease(op.id, "a", ttl=10)
    assert not (await store.append_event(lease, "x", {})).cancel_requested
    assert await store.request_cancel(op.id)
    assert (await store.append_event(lease, "x", {})).cancel_requested
    await store.finish_operation(lease, "cancelled")
    assert not await store.request_cancel(op.id)


async def test_prune_deletes_only_old_finished_operations(
    store: CheckpointStore, clock: FakeClock
):
    """Retention removes finished operations past the age, with steps and events."""
    old, _ = await store.create_operation(user_id="u1", kind="k", input={"n": 1})
    unfinished, _ = await store.create_operation(user_id="u1", kind="k", input={"n": 2})
    lease = await store.acquire_lease(old.id, "a", ttl=10)
    await store.plan_steps(lease, ["s1"])
    await store.finish_operation(lease, "succeeded", event=("result", {}))
    clock.advance(3 * 86400)
    recent, _ = await store.create_operation(user_id="u1", kind="k", input={"n": 3})
    lease = await store.acquire_lease(recent.id, "a", ttl=10)
    await store.finish_operation(lease, "failed", error={"code": "X"})

    assert await store.prune(timedelta(days=2)) == 1
    with pytest.raises(OperationNotFound):
        await store.get_operation(old.id)
    assert await store.get_steps(old.id) == []
    assert await store.read_events(old.id) == []
    assert (await store.get_operation(unfinished.id)).status == "pending"
    assert (await store.get_operation(recent.id)).status == "failed"
    assert await store.prune(timedelta(days=2)) == 0


async def test_create_schema_sets_up_a_store_without_migrations(tmp_path):
    """Library use without Alembic: create_schema makes the tables the store needs."""
    store = CheckpointStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")
    try:
        await store.create_schema()
        op, created = await store.create_operation(user_id="u", kind="k", input={"a": 1})
        lease = await store.acquire_lease(op.id, "me", ttl=5)
        assert created
        assert (await store.append_event(lease, "step", {})).seq == 1
    finally:
        await store.close()


async def test_on_sqlite_a_failed_transaction_still_rolls_back(sqlite_url: str):
    """The no-op COMMIT/ROLLBACK that single statements end with is skipped, never a real
    one: a transaction that fails is rolled back and frees the write lock at once."""
    store = CheckpointStore.from_url(sqlite_url)
    try:
        op, _ = await store.create_operation(user_id="u1", kind="k", input={})

        async def abandoned_transaction() -> None:
            async with store.engine.begin() as conn:
                await conn.execute(
                    operations.update().where(operations.c.id == op.id).values(status="failed")
                )
                raise RuntimeError("abandoned")

        with pytest.raises(RuntimeError):
            await abandoned_transaction()
        assert (await store.get_operation(op.id)).status == "pending"
        lease = await asyncio.wait_for(store.acquire_lease(op.id, "next", ttl=10), 5)
        assert lease.owner == "next"
    finally:
        await store.close()
