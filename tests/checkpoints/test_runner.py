"""The step runner on PostgreSQL and SQLite: resume, groups, cancellation, fencing."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from checkpoints import (
    CheckpointStore,
    LeaseLost,
    LeaseUnavailable,
    Outcome,
    Runner,
    Step,
    StepContext,
    operations,
)
from tests.checkpoints.child import make_plan
from tests.clock import FakeClock
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.anyio


class StepError(Exception):
    def __init__(self, code: str, retryable: bool) -> None:
        super().__init__(f"{code} happened")
        self.code = code
        self.retryable = retryable


class Calls:
    """Counts step executions, the side effect the store must never repeat."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.failing: dict[str, StepError] = {}

    def step(self, key: str, group: str | None = None, **kw: bool) -> Step:
        async def fn(ctx: StepContext) -> dict[str, object]:
            self.count[key] += 1
            await asyncio.sleep(0)
            if key in self.failing:
                raise self.failing[key]
            return {"key": key, "seen": sorted(ctx.outputs)}

        return Step(key, fn, group=group, **kw)


async def run_once(
    store: CheckpointStore, operation_id: str, plan: list[Step], **runner_kw: object
) -> Outcome:
    runner = Runner(store, owner="test", **runner_kw)  # type: ignore[arg-type]
    async with runner.claim(operation_id) as run:
        await run.plan(plan)
        return await run.execute()


async def new_operation(store: CheckpointStore) -> str:
    op, _ = await store.create_operation(user_id="u1", kind="k", input={})
    return op.id


async def step_events(store: CheckpointStore, operation_id: str) -> list[tuple[str, str]]:
    return [
        (e.data["step"], e.data["status"])
        for e in await store.read_events(operation_id)
        if e.type == "step"
    ]


async def test_a_plan_runs_in_order_and_each_step_is_recorded_and_reported(
    store: CheckpointStore,
):
    """Every step gets a started and a completed event; outputs flow to later steps."""
    calls = Calls()
    op_id = await new_operation(store)
    plan = [calls.step("s1"), calls.step("g/1", "g"), calls.step("g/2", "g"), calls.step("s4")]
    outcome = await run_once(store, op_id, plan)
    assert outcome.outputs["s4"] == {"key": "s4", "seen": ["g/1", "g/2", "s1"]}
    assert outcome.outputs["g/2"]["seen"] == ["g/1", "s1"]
    assert not outcome.failures
    assert outcome.failed_step is None
    assert await step_events(store, op_id) == [
        (k, s) for k in ("s1", "g/1", "g/2", "s4") for s in ("started", "completed")
    ]
    events = await store.read_events(op_id)
    assert [e.seq for e in events] == list(range(1, 9))
    assert all(e.data["operation_id"] == op_id for e in events)
    steps = await store.get_steps(op_id)
    assert [(s.key, s.status, s.attempts) for s in steps] == [
        ("s1", "completed", 1), ("g/1", "completed", 1), ("g/2", "completed", 1),
        ("s4", "completed", 1),
    ]


async def test_an_operation_created_leased_runs_without_being_taken(store: CheckpointStore):
    """An operation created held by its creator's runner is fenced from the start: no
    one else takes it before the lease expires; the runner runs it on that first lease,
    and its release frees it."""
    op, created = await store.create_operation(user_id="u1", kind="k", input={},
                                               owner="test", ttl=10)
    assert created
    assert (op.lease_owner, op.lease_token) == ("test", 1)
    with pytest.raises(LeaseUnavailable):
        await store.take_operation(op.id, "other", ttl=10)
    with pytest.raises(ValueError, match="not held by other"):
        async with Runner(store, owner="other").claim(op.id, taken=op):
            pass
    calls = Calls()
    async with Runner(store, owner="test").claim(op.id, taken=op) as run:
        await run.plan([calls.step("s1")])
        outcome = await run.execute()
    assert outcome.outputs["s1"]["key"] == "s1"
    current = await store.get_operation(op.id)
    assert (current.lease_token, current.lease_owner) == (1, None)
    lease, _ = await store.take_operation(op.id, "other", ttl=10)
    assert lease.token == 2


async def test_groups_run_concurrently(store: CheckpointStore):
    """Steps of different groups overlap in time; a group's own steps stay in order."""
    op_id = await new_operation(store)
    running = 0
    peak = 0
    order: list[str] = []

    def step(key: str, group: str) -> Step:
        async def fn(_ctx: StepContext) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            order.append(key)
            running -= 1

        return Step(key, fn, group=group)

    plan = [step(f"v{i}/{part}", f"v{i}") for i in (1, 2, 3) for part in ("render", "record")]
    await run_once(store, op_id, plan)
    assert peak == 3
    for i in (1, 2, 3):
        assert order.index(f"v{i}/render") < order.index(f"v{i}/record")


async def test_a_resumed_run_skips_completed_steps_and_hands_their_outputs_on(
    store: CheckpointStore,
):
    """After a retryable failure, the next run starts at the failed step."""
    calls = Calls()
    op_id = await new_operation(store)
    plan = [calls.step("s1"), calls.step("s2"), calls.step("s3")]
    calls.failing["s2"] = StepError("PROVIDER_UNAVAILABLE", retryable=True)
    first = await run_once(store, op_id, plan)
    assert first.failed_step == "s2"
    assert first.failures["s2"]["code"] == "PROVIDER_UNAVAILABLE"
    assert [s.status for s in await store.get_steps(op_id)] == ["completed", "failed", "pending"]

    del calls.failing["s2"]
    second = await run_once(store, op_id, plan)
    assert second.failed_step is None
    assert not second.failures
    assert calls.count == {"s1": 1, "s2": 2, "s3": 1}
    assert second.outputs["s3"]["seen"] == ["s1", "s2"]
    assert [s.attempts for s in await store.get_steps(op_id)] == [1, 2, 1]


async def test_a_variation_that_fails_for_good_is_skipped_while_others_finish(
    store: CheckpointStore,
):
    """A non-retryable failure skips the rest of its group only; later steps still run."""
    calls = Calls()
    op_id = await new_operation(store)
    plan = [
        calls.step("reserve"),
        calls.step("v1/render", "v1"), calls.step("v1/record", "v1"),
        calls.step("v2/render", "v2"), calls.step("v2/record", "v2"),
        calls.step("settle"),
    ]
    calls.failing["v1/render"] = StepError("CONTENT_BLOCKED", retryable=False)
    outcome = await run_once(store, op_id, plan)
    assert outcome.skipped == {"v1/record"}
    assert set(outcome.failures) == {"v1/render"}
    assert outcome.failed_step is None
    assert outcome.outputs["settle"]["seen"] == ["reserve", "v2/record", "v2/render"]
    assert ("v1/record", "skipped") in await step_events(store, op_id)
    # Taken over again (e.g. after a crash): nothing runs twice, the blocked render stays.
    again = await run_once(store, op_id, plan)
    assert calls.count["v1/render"] == 1
    assert calls.count["settle"] == 1
    assert again.skipped == {"v1/record"}


async def test_cancel_skips_work_not_started_and_finishes_started_groups(
    store: CheckpointStore,
):
    """A cancel requested elsewhere reaches the run at its next write: the started group
    finishes, work not started is skipped, steps marked to run when cancelled still run."""
    op_id = await new_operation(store)
    calls = Calls()

    async def render_then_cancelled(ctx: StepContext) -> str:
        calls.count["v1/render"] += 1
        assert await ctx.run.store.request_cancel(ctx.operation.id)  # another instance
        await ctx.emit("progress", {"done": 1})  # the owner learns of it here
        return "image"

    plan = [
        calls.step("reserve"),
        Step("v1/render", render_then_cancelled, group="v1"), calls.step("v1/record", "v1"),
        calls.step("between"),
        calls.step("v2/render", "v2"), calls.step("v2/record", "v2"),
        calls.step("settle", always=True),
    ]
    runner = Runner(store, owner="test")
    async with runner.claim(op_id) as run:
        await run.plan(plan)
        outcome = await run.execute()
        await run.finish("cancelled", error={"code": "OPERATION_CANCELLED"})
    assert outcome.cancelled
    assert outcome.skipped == {"between", "v2/render", "v2/record"}
    assert calls.count == {"reserve": 1, "v1/render": 1, "v1/record": 1, "settle": 1}
    statuses = {s.key: s.status for s in await store.get_steps(op_id)}
    assert statuses == {
        "reserve": "completed", "v1/render": "completed", "v1/record": "completed",
        "between": "skipped", "v2/render": "skipped", "v2/record": "skipped",
        "settle": "completed",
    }
    assert (await store.get_operation(op_id)).status == "cancelled"


async def test_a_cancel_learned_from_a_completion_skips_the_next_step_unstarted(
    store: CheckpointStore,
):
    """A cancel requested while a step runs, learned only from the write of its completion
    (which carries the next step's start), leaves the next step skipped and never started;
    a step marked to run when cancelled still starts in that write."""
    op_id = await new_operation(store)
    calls = Calls()

    async def cancelled_elsewhere(ctx: StepContext) -> str:
        assert await ctx.run.store.request_cancel(ctx.operation.id)
        return "done"

    plan = [
        Step("s1", cancelled_elsewhere), calls.step("s2"), calls.step("s3"),
        calls.step("settle", always=True),
    ]
    outcome = await run_once(store, op_id, plan)
    assert outcome.cancelled
    assert outcome.skipped == {"s2", "s3"}
    assert calls.count == {"settle": 1}
    assert await step_events(store, op_id) == [
        ("s1", "started"), ("s1", "completed"), ("s2", "skipped"), ("s3", "skipped"),
        ("settle", "started"), ("settle", "completed"),
    ]
    assert [e.seq for e in await store.read_events(op_id)] == list(range(1, 7))
    steps = {s.key: (s.status, s.attempts) for s in await store.get_steps(op_id)}
    assert steps["s2"] == ("skipped", 0)


async def test_a_step_costs_one_statement(db_url: str, clock: FakeClock):
    """Each step's completion and the next one's start are one statement, with no
    BEGIN/COMMIT around it; the status change goes with the first start, and the last
    completion with the terminal write: a run of n steps costs n + 1 statements."""
    store = CheckpointStore.from_url(db_url, clock=clock)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    try:
        op_id = await new_operation(store)
        calls = Calls()
        async with Runner(store, owner="test").claim(op_id) as run:
            await run.plan([calls.step(f"s{i}") for i in range(5)])
            sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
            try:
                run.open("running", event=("operation", {"first": True}))
                await run.execute()
                await run.finish("succeeded", event=("result", {}))
            finally:
                sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
        assert len(statements) == 6
        assert not any(s.lstrip().upper().startswith(("BEGIN", "COMMIT")) for s in statements)
        events = await store.read_events(op_id)
        assert [e.seq for e in events] == list(range(1, 13))
        assert (events[0].type, events[1].data["step"]) == ("operation", "s0")
        assert [(e.data.get("step"), e.data.get("status")) for e in events[-2:]] == [
            ("s4", "completed"), (None, None)
        ]
        assert events[-1].type == "result"
        assert all(s.status == "completed" for s in await store.get_steps(op_id))
    finally:
        await store.close()


async def test_suspend_stops_before_the_next_step_and_leaves_it_pending(
    store: CheckpointStore,
):
    """A suspended run (server shutdown) finishes its step and leaves the rest pending."""
    op_id = await new_operation(store)
    runner = Runner(store, owner="test")
    calls = Calls()
    async with runner.claim(op_id) as run:

        async def first(_ctx: StepContext) -> int:
            run.suspend()
            return 1

        await run.plan([Step("s1", first), calls.step("s2")])
        outcome = await run.execute()
    assert outcome.suspended
    assert calls.count["s2"] == 0
    assert [s.status for s in await store.get_steps(op_id)] == ["completed", "pending"]
    operation = await store.get_operation(op_id)
    assert operation.lease_owner is None  # released on the way out


async def test_the_wrap_hook_retries_a_step_and_reports_through_events(
    store: CheckpointStore,
):
    """A retry policy wraps each step and can emit `retry` events under the lease."""
    op_id = await new_operation(store)
    tries = Counter[str]()

    async def flaky(ctx: StepContext) -> str:
        tries[ctx.step.key] += 1
        if tries[ctx.step.key] < 3:
            raise StepError("PROVIDER_UNAVAILABLE", retryable=True)
        return "ok"

    async def retry(ctx: StepContext, call: Callable[[], Awaitable[object]]) -> object:
        for attempt in range(1, 10):
            try:
                return await call()
            except StepError as exc:
                await ctx.emit("retry", {"step": ctx.step.key, "attempt": attempt,
                                         "error": {"code": exc.code}})
        raise AssertionError("unreachable")

    outcome = await run_once(store, op_id, [Step("s1", flaky)], wrap=retry)
    assert outcome.outputs == {"s1": "ok"}
    types = [e.type for e in await store.read_events(op_id)]
    assert types == ["step", "retry", "retry", "step"]
    assert (await store.get_steps(op_id))[0].attempts == 1


async def test_a_cancelled_task_leaves_its_step_failed_never_half_recorded(
    store: CheckpointStore,
):
    """Cancelling the run's task mid-step records the step as interrupted (retryable)."""
    op_id = await new_operation(store)
    started = asyncio.Event()
    calls = Calls()

    async def hang(_ctx: StepContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(run_once(store, op_id, [calls.step("s1"), Step("s2", hang)]))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    steps = {s.key: s for s in await store.get_steps(op_id)}
    assert steps["s1"].status == "completed"
    assert steps["s2"].status == "failed"
    assert steps["s2"].error["code"] == "INTERRUPTED"
    assert (await store.get_operation(op_id)).lease_owner is None

    async def quick(_ctx: StepContext) -> str:
        return "done"

    outcome = await run_once(store, op_id, [calls.step("s1"), Step("s2", quick)])
    assert outcome.outputs["s2"] == "done"
    assert calls.count["s1"] == 1


async def test_an_owner_whose_lease_is_taken_over_is_stopped(
    db_url: str, clock: FakeClock
):
    """The renewal finds the newer owner: the old run is cancelled with LeaseLost and
    nothing it tries to write afterwards is stored."""
    old_store = CheckpointStore.from_url(db_url, clock=clock)
    later = FakeClock(clock.now + 100)  # the new owner's clock: the old lease has expired
    new_store = CheckpointStore.from_url(db_url, clock=later)
    try:
        op_id = await new_operation(old_store)
        in_step = asyncio.Event()
        proceed = asyncio.Event()

        async def slow(_ctx: StepContext) -> str:
            in_step.set()
            await proceed.wait()
            return "old"

        old = Runner(old_store, owner="old", lease_ttl=30, renew_every=0.05)

        async def old_run() -> None:
            async with old.claim(op_id) as run:
                await run.plan([Step("s1", slow)])
                await run.execute()

        task = asyncio.create_task(old_run())
        await in_step.wait()
        lease = await new_store.acquire_lease(op_id, "new", ttl=30)
        with pytest.raises(LeaseLost):
            await task
        steps = await new_store.get_steps(op_id)
        assert steps[0].status == "running"  # the old owner's failure write was refused
        assert [e.data["status"] for e in await new_store.read_events(op_id)] == ["started"]
        assert (await new_store.get_operation(op_id)).lease_token == lease.token
    finally:
        await old_store.close()
        await new_store.close()


async def test_a_run_that_ends_while_its_lease_renewal_waits_leaves_the_store_writable(
    store: CheckpointStore,
):
    """The run ends while its lease renewal waits for a lock another transaction holds:
    the renewal is let finish, and afterwards the lease is released and writes go through
    (cut off mid-statement on SQLite, it kept the write lock and stalled every writer)."""
    op_id = await new_operation(store)
    claimed, renew_now = asyncio.Event(), asyncio.Event()
    renewing, leaving = asyncio.Event(), asyncio.Event()
    sleeps = 0

    async def first_renewal_on_cue(_seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await (renew_now.wait() if sleeps == 1 else asyncio.Event().wait())

    @sa.event.listens_for(store.engine.sync_engine, "before_cursor_execute")
    def spot_the_renewal(_conn, _cursor, statement: str, *_rest: object) -> None:
        # Fires just before the driver gets the statement: it is in flight from then on.
        if statement.startswith("UPDATE operations SET lease_expires_at"):
            renewing.set()

    async def run() -> None:
        async with Runner(store, owner="test", sleep=first_renewal_on_cue).claim(op_id):
            claimed.set()
            await renewing.wait()
            leaving.set()  # the claim stops its lease keeper right after this

    task = asyncio.create_task(run())
    await claimed.wait()
    async with store.engine.begin() as blocker:  # the write lock (SQLite), the row's lock
        await blocker.execute(
            sa.select(operations.c.id).where(operations.c.id == op_id).with_for_update()
        )
        renew_now.set()
        await leaving.wait()
    await task
    assert (await store.get_operation(op_id)).lease_owner is None
    written = await store.append_event(op_id, "after", {})
    assert written.seq == 1


async def test_racing_runners_execute_each_step_exactly_once(db_url: str):
    """Five runners (separate engines, like instances) race for one operation."""
    stores = [CheckpointStore.from_url(db_url) for _ in range(5)]
    calls = Calls()
    try:
        op_id = await new_operation(stores[0])
        plan = [calls.step("s1"), calls.step("a/1", "a"), calls.step("b/1", "b"),
                calls.step("s2")]

        async def contender(i: int) -> bool:
            try:
                await run_once(stores[i], op_id, plan)
            except LeaseUnavailable:
                return False
            return True

        won = await asyncio.gather(*(contender(i) for i in range(5)))
        # A loser may still win later, once the winner released: then it runs nothing.
        assert sum(won) >= 1
        assert calls.count == {"s1": 1, "a/1": 1, "b/1": 1, "s2": 1}
    finally:
        for store in stores:
            await store.close()


def read_effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines()) if path.exists() else Counter()


async def test_a_run_killed_mid_step_is_resumed_without_repeating_finished_steps(
    db_url: str, tmp_path: Path
):
    """SIGKILL a child in the middle of a step; after the lease expires a new runner
    resumes it: completed steps never run again and the operation completes."""
    store = CheckpointStore.from_url(db_url)
    effects = tmp_path / "effects"
    try:
        op_id = await new_operation(store)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.checkpoints.child", "run", db_url, op_id,
            str(effects), "b/1", "1.0",
            cwd=ROOT, env=child_env(),
        )
        try:
            for _ in range(600):
                if read_effects(effects)["begin b/1"]:
                    break
                assert child.returncode is None, "the child ended early"
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the child never reached b/1")
            await asyncio.sleep(0.1)  # let a/1 and a/2 finish alongside
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        before = {s.key: s.status for s in await store.get_steps(op_id)}
        assert before["s1"] == "completed"
        assert before["b/1"] == "running"
        assert "completed" in before.values()

        runner = Runner(store, owner="rescuer", lease_ttl=5)
        for _ in range(100):  # the child's lease lives one second
            try:
                async with runner.claim(op_id) as run:
                    await run.plan(make_plan(effects))
                    outcome = await run.execute()
                    await run.finish("succeeded", result={"keys": sorted(outcome.outputs)})
                break
            except LeaseUnavailable:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the dead child's lease never expired")

        effects_seen = read_effects(effects)
        for key in ("s1", "a/1", "a/2", "b/1", "s4"):
            assert effects_seen[f"end {key}"] == 1, key
            # A step completed before the kill never runs again; one cut by it runs twice.
            assert effects_seen[f"begin {key}"] == (2 if before[key] == "running" else 1), key
        operation = await store.get_operation(op_id)
        assert operation.status == "succeeded"
        seqs = [e.seq for e in await store.read_events(op_id)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await store.close()


async def test_a_failed_operation_reopened_reruns_its_reset_steps(store: CheckpointStore):
    """After a retryable failure, set_status('running') reopens the operation (error and
    finish time cleared) and reset steps run again with the failed one."""
    calls = Calls()
    op_id = await new_operation(store)
    plan = [calls.step("reserve"), calls.step("work"), calls.step("settle")]
    calls.failing["work"] = StepError("PROVIDER_UNAVAILABLE", retryable=True)
    runner = Runner(store, owner="test")
    async with runner.claim(op_id) as run:
        await run.plan(plan)
        await run.execute()
        await run.finish("failed", error={"code": "PROVIDER_UNAVAILABLE", "retryable": True})
    failed = await store.get_operation(op_id)
    assert failed.status == "failed"
    assert [s.status for s in await store.get_steps(op_id)] == ["completed", "failed", "pending"]

    del calls.failing["work"]
    async with runner.claim(op_id) as run:
        await run.plan(plan)
        await run.reset(["reserve", "settle"])
        await run.set_status("running")
        reopened = await store.get_operation(op_id)
        assert reopened.status == "running"
        assert reopened.error is None
        assert reopened.finished_at is None
        outcome = await run.execute()
        await run.finish("succeeded", result={"ok": True})
    assert calls.count == {"reserve": 2, "work": 2, "settle": 1}
    assert set(outcome.outputs) == {"reserve", "work", "settle"}
    assert (await store.get_operation(op_id)).status == "succeeded"


async def test_a_failed_step_halts_the_plan_but_always_steps_still_run(
    store: CheckpointStore,
):
    """After an ungrouped failure later steps stay pending (for a resume), except those
    marked `always` (e.g. settling credits)."""
    calls = Calls()
    op_id = await new_operation(store)
    calls.failing["render"] = StepError("CONTENT_BLOCKED", retryable=False)
    plan = [calls.step("reserve"), calls.step("render"), calls.step("record"),
            calls.step("settle", always=True)]
    outcome = await run_once(store, op_id, plan)
    assert outcome.failed_step == "render"
    assert calls.count == {"reserve": 1, "render": 1, "settle": 1}
    assert outcome.outputs["settle"]["seen"] == ["reserve"]
    statuses = {s.key: s.status for s in await store.get_steps(op_id)}
    assert statuses == {"reserve": "completed", "render": "failed", "record": "pending",
                        "settle": "completed"}

