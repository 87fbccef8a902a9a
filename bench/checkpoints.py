"""Per-step overhead of the checkpoint runner on PostgreSQL and SQLite.

Runs a plan of N no-op steps and prints, per backend: the overhead per step (p50, p95:
the time from one step function's return to the next one's call, i.e. recording the
completion and the next start with their events), database round trips per step, and the
same figures for a bare `SELECT 1` measured in the same run as the floor; for SQLite,
the figures against its aims too (≤ 3 statements and p50 ≤ 2 ms per step).

    python bench/checkpoints.py [--steps 1000] [--database-url postgresql+asyncpg://…]

Without --database-url a throwaway PostgreSQL cluster is started from the installed
binaries (as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from checkpoints import CheckpointStore, Runner, Step, StepContext
from service import migrate


class RoundTrips:
    """Counts statements and transaction control sent to the database."""

    def __init__(self, store: CheckpointStore) -> None:
        self.count = 0
        engine = store.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        for name in ("begin", "commit", "rollback"):
            sa.event.listen(engine, name, self._transaction)
        self._is_sqlite = engine.dialect.name == "sqlite"

    def _statement(self, *_args: Any) -> None:
        self.count += 1

    def _transaction(self, conn: sa.Connection, *_args: Any) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if self._is_sqlite and options.get("checkpoints_autocommit"):
            return
        self.count += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(url: str, steps: int) -> dict[str, float]:
    store = CheckpointStore.from_url(url)
    try:
        # The floor: one trivial statement on the same engine, same connection mode.
        floor: list[float] = []
        for _ in range(200):
            t0 = time.perf_counter()
            async with store._single.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            floor.append(time.perf_counter() - t0)

        calls: list[float] = []

        async def noop(_ctx: StepContext) -> None:
            calls.append(time.perf_counter())

        plan = [Step(f"s{i:04d}", noop) for i in range(steps)]
        op, _ = await store.create_operation(user_id="bench", kind="bench", input={})
        runner = Runner(store, owner="bench")
        async with runner.claim(op.id) as run:
            await run.plan(plan)
            trips = RoundTrips(store)
            t0 = time.perf_counter()
            await run.execute()
            total = time.perf_counter() - t0
        gaps = [b - a for a, b in itertools.pairwise(calls)]
        return {
            "p50_ms": statistics.median(gaps) * 1e3,
            "p95_ms": percentile(gaps, 0.95) * 1e3,
            "mean_ms": total / steps * 1e3,
            "round_trips_per_step": trips.count / steps,
            "floor_p50_ms": statistics.median(floor) * 1e3,
        }
    finally:
        await store.close()


#: The embedded default's aims per step: statements (and BEGIN/COMMIT) and p50 overhead.
SQLITE_AIM_STATEMENTS = 3
SQLITE_AIM_P50_MS = 2.0


def report(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:<10} per-step overhead p50 {r['p50_ms']:.3f} ms  p95 {r['p95_ms']:.3f} ms  "
        f"mean {r['mean_ms']:.3f} ms  round trips/step {r['round_trips_per_step']:.2f}  |  "
        f"SELECT 1 p50 {r['floor_p50_ms']:.3f} ms  →  p50 = "
        f"{r['p50_ms'] / r['floor_p50_ms']:.2f}× one round trip"
    )


def report_aims(r: dict[str, float]) -> None:
    statements, p50 = r["round_trips_per_step"], r["p50_ms"]
    print(
        f"{'':<10} aims: statements/step {statements:.2f} of ≤ {SQLITE_AIM_STATEMENTS} "
        f"({statements / SQLITE_AIM_STATEMENTS:.2f}×), p50 {p50:.3f} ms of ≤ "
        f"{SQLITE_AIM_P50_MS:g} ms ({p50 / SQLITE_AIM_P50_MS:.2f}×): "
        + ("met" if statements <= SQLITE_AIM_STATEMENTS and p50 <= SQLITE_AIM_P50_MS
           else "NOT met")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: throwaway cluster)")
    args = parser.parse_args()

    server = None
    pg_url = args.database_url
    if pg_url is None:
        from tests.servers import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
        pg_url = server.url
    try:
        await migrate(pg_url)
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            await migrate(sqlite_url)
            print(f"{args.steps} no-op steps, one operation")
            report("postgresql", await bench(pg_url, args.steps))
            sqlite_figures = await bench(sqlite_url, args.steps)
            report("sqlite", sqlite_figures)
            report_aims(sqlite_figures)
    finally:
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    asyncio.run(main())
