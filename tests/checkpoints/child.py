"""Child processes for the cross-process checkpoint tests.

    python -m tests.checkpoints.child run URL OPERATION_ID EFFECTS_FILE HANG_IN LEASE_TTL
    python -m tests.checkpoints.child follow URL OPERATION_ID AFTER POLL_INTERVAL
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from checkpoints import CheckpointStore, Runner, Step, StepContext


def side_effect(path: Path, line: str) -> None:
    """Record that a step function ran (outside the store), durably."""
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def make_plan(effects: Path, hang_in: str | None = None) -> list[Step]:
    """s1 → (a/1, a/2 ‖ b/1) → s4; each step notes its runs; `hang_in` never returns."""

    def step(key: str, group: str | None = None) -> Step:
        async def fn(ctx: StepContext) -> dict[str, object]:
            side_effect(effects, f"begin {key}")
            if key == hang_in:
                await asyncio.sleep(3600)
            side_effect(effects, f"end {key}")
            return {"key": key, "inputs": sorted(ctx.outputs)}

        return Step(key, fn, group=group)

    return [step("s1"), step("a/1", "a"), step("a/2", "a"), step("b/1", "b"), step("s4")]


async def run(url: str, operation_id: str, effects: Path, hang_in: str, ttl: float) -> None:
    store = CheckpointStore.from_url(url)
    try:
        runner = Runner(store, owner=f"child-{os.getpid()}", lease_ttl=ttl)
        async with runner.claim(operation_id) as claimed:
            await claimed.plan(make_plan(effects, hang_in))
            await claimed.emit("operation", {})
            outcome = await claimed.execute()
            await claimed.finish("succeeded", result=dict(outcome.outputs))
    finally:
        await store.close()


async def follow(url: str, operation_id: str, after: int, poll: float) -> None:
    store = CheckpointStore.from_url(url, poll_interval=poll)
    try:
        # Open the LISTEN connection before saying we are ready.
        await store.wait_for_events(operation_id, after, timeout=0)
        print("ready", flush=True)
        events = await store.wait_for_events(operation_id, after, timeout=120)
        print(json.dumps([[e.seq, e.type] for e in events]), flush=True)
    finally:
        await store.close()


def main(argv: list[str]) -> None:
    if argv[0] == "run":
        asyncio.run(run(argv[1], argv[2], Path(argv[3]), argv[4], float(argv[5])))
    elif argv[0] == "follow":
        asyncio.run(follow(argv[1], argv[2], int(argv[3]), float(argv[4])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
