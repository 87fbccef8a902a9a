"""Event streams at scale, and the cost of the whole generate pipeline.

    python bench/streaming.py [--streams 100,500,1000] [--runs 15]

Starts a throwaway PostgreSQL and Redis and one service instance (as the tests do) and
prints, in one run:
  * for 100, 500 and 1,000 concurrent SSE streams following one running operation on one
    instance: time to first event (p50, p95) and server memory per open stream (RSS
    growth divided by the number of streams), for the service and, with the same client
    code, for a bare sse-starlette app (`bare_sse.py`, its own uvicorn process) that
    sends the same recorded events, with the p95 ratio service / bare;
  * the overhead of a whole `thumbnail.generate` run through the API (auth, rate limiter,
    checkpoints, events, storage, JSON answer) over calling the `local` renderer and the
    variant encoder directly, as a ratio of medians, on PostgreSQL + Redis and on the
    embedded default (SQLite, in-process limiter).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from checkpoints import CheckpointStore, create_engine  # noqa: E402
from service import migrate  # noqa: E402
from service._images import make_variants  # noqa: E402
from service._spec import ThumbnailSpec  # noqa: E402
from service.accounts import Accounts  # noqa: E402
from service.providers.local import render_thumbnail  # noqa: E402
from tests.conftest import child_env  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402
from tests.service.conftest import SECRET, ServiceProcess, auth  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: Each count is measured this many times on each app, alternately; the table shows the
#: medians (the machine is shared: one measurement alone can be a fluke).
ROUNDS = 3


@dataclass
class BareProcess(ServiceProcess):
    """`bench/bare_sse.py` in a child process, started and stopped like the service."""

    events_path: Path | None = None

    def start(self) -> None:
        assert self.log_path is not None
        assert self.events_path is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "bare_sse.py"), "--port", str(self.port),
                 "--events", str(self.events_path)],
                cwd=ROOT, env=child_env(), stdout=log, stderr=log,
            )
        self.wait_until_ready()


@dataclass(frozen=True)
class Sample:
    p50_ms: float
    p95_ms: float
    kib_per_stream: float


async def first_events(
    base: str, path: str, n: int
) -> tuple[list[float], Callable[[], Awaitable[None]]]:
    """Open n streams; each one's time to first event, and a function that closes them."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    client = httpx.AsyncClient(base_url=base, timeout=120, limits=limits)
    got: list[float] = []
    ready = asyncio.Event()
    release = asyncio.Event()

    async def one() -> None:
        started = time.perf_counter()
        async with client.stream("GET", path, headers=auth("bench")) as response:
            response.raise_for_status()
            # Kept referenced: a line iterator left by `break` and collected closes the
            # response, and with it the stream, long before `release`.
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    got.append(time.perf_counter() - started)
                    if len(got) == n:
                        ready.set()
                    break
            await release.wait()
            await lines.aclose()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    waiting = asyncio.create_task(ready.wait())
    # A stream that ends before all have their first event failed (e.g. a 429).
    await asyncio.wait([waiting, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()

    async def close() -> None:
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()

    if not ready.is_set():
        await close()
        failed = [t.exception() for t in tasks if t.done() and t.exception()]
        raise RuntimeError(f"{len(got)} of {n} streams got their first event: {failed[:1]}")
    return got, close


async def measure(server: ServiceProcess, path: str, n: int) -> Sample:
    """n streams on `server` at once: time to first event, and RSS growth per stream."""
    assert server.process is not None
    before = rss_kib(server.process.pid)
    times, close = await first_events(server.url, path, n)
    during = rss_kib(server.process.pid)
    await close()
    await asyncio.sleep(1)
    return Sample(statistics.median(times) * 1e3, pct(times, 0.95) * 1e3, (during - before) / n)


async def recorded_events(database_url: str, operation_id: str) -> list[dict[str, Any]]:
    """The operation's event log so far, as the bare app's in-memory operation."""
    store = CheckpointStore.from_url(database_url, listen=False)
    try:
        return [{"seq": e.seq, "type": e.type, "data": dict(e.data)}
                for e in await store.read_events(operation_id)]
    finally:
        await store.close()


async def streams(env: dict[str, str], counts: list[int], root: Path) -> None:
    server = ServiceProcess({**env, "LOCAL_PROVIDER_DELAY_MS": "600000"},
                            log_path=root / "streams.log")
    bare = BareProcess({}, log_path=root / "bare.log", events_path=root / "events.json")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            created = await client.post("/v1/thumbnails", json={"title": "Followed"},
                                        headers={**auth("bench"), "Prefer": "respond-async"})
            op_id = created.json()["operation_id"]
            await asyncio.sleep(0.5)  # the run is in its (long) render now
        # The bare app sends the very events the service has recorded so far.
        events = await recorded_events(env["DATABASE_URL"], op_id)
        (root / "events.json").write_text(json.dumps(events))
        bare.start()
        path = f"/v1/operations/{op_id}/events"
        print(f"concurrent SSE streams following one running operation ({len(events)} events "
              "recorded), one instance; the same client against a bare sse-starlette app and "
              f"the service, median of {ROUNDS} rounds (memory: largest growth of a round):")
        print("  streams |   bare p50      p95  memory/stream |  service p50      p95  "
              "memory/stream | p95 service/bare")
        for n in counts:
            of_bare: list[Sample] = []
            of_service: list[Sample] = []
            for _ in range(ROUNDS):
                of_bare.append(await measure(bare, path, n))
                of_service.append(await measure(server, path, n))
            b, s = _summary(of_bare), _summary(of_service)
            print(f"  {n:>7} | {b.p50_ms:7.1f} ms {b.p95_ms:7.1f} ms {b.kib_per_stream:8.1f} KiB"
                  f" | {s.p50_ms:8.1f} ms {s.p95_ms:7.1f} ms {s.kib_per_stream:8.1f} KiB"
                  f" | {s.p95_ms / b.p95_ms:6.2f}x", flush=True)
    finally:
        bare.kill()
        server.kill()


def _summary(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.p50_ms for s in samples),
                  statistics.median(s.p95_ms for s in samples),
                  max(s.kib_per_stream for s in samples))


async def generate_once(client: httpx.AsyncClient, key: str) -> float:
    """Seconds of one whole generate run through the API (JSON answer at the end)."""
    started = time.perf_counter()
    response = await client.post("/v1/thumbnails", json={"title": "Overhead"},
                                 headers={**auth("bench"), "Idempotency-Key": key})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


async def overhead(env: dict[str, str], runs: int, root: Path) -> None:
    """The whole API run on PostgreSQL + Redis and on the embedded default (SQLite, the
    in-process limiter) against the renderer and variant encoder called directly. The
    three take turns, run after run, so that a busy machine weighs on all of them alike."""
    spec = ThumbnailSpec(title="Overhead", resolution="1K", aspect_ratio="16:9")
    sqlite_url = f"sqlite+aiosqlite:///{root / 'overhead.db'}"
    await migrate(sqlite_url)
    engine = create_engine(sqlite_url)
    await Accounts(engine).set("bench", tier="pro", credits=1_000_000)
    await engine.dispose()
    embedded = {k: v for k, v in env.items() if k != "REDIS_URL"}
    embedded.update(DATABASE_URL=sqlite_url, DATA_DIR=str(root / "embedded"))
    servers = {
        "postgresql": ServiceProcess(env, log_path=root / "overhead-postgresql.log"),
        "sqlite": ServiceProcess(embedded, log_path=root / "overhead-sqlite.log"),
    }
    direct: list[float] = []
    api: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
        clients = {name: httpx.AsyncClient(base_url=server.url, timeout=60)
                   for name, server in servers.items()}
        for name, client in clients.items():  # first requests warm each instance up
            await generate_once(client, f"{name}-warm-up")
        for i in range(runs):
            started = time.perf_counter()
            png = await asyncio.to_thread(render_thumbnail, spec)
            await asyncio.to_thread(make_variants, png, (400, 800))
            direct.append(time.perf_counter() - started)
            for name, client in clients.items():
                api[name].append(await generate_once(client, f"{name}-{i}"))
        for client in clients.values():
            await client.aclose()
    finally:
        for server in servers.values():
            server.kill()
    d = statistics.median(direct)
    print(f"generate 1K x1, median of {runs}: renderer+variants directly {d * 1e3:.1f} ms")
    for name, times in api.items():
        a = statistics.median(times)
        print(f"  whole API run on {name:<10} {a * 1e3:7.1f} ms → {a / d:.2f}× "
              f"(overhead {(a - d) * 1e3:.1f} ms)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="100,500,1000")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    pg, redis = PostgresServer(), RedisServer()
    pg.init()
    pg.start()
    redis.start()
    try:
        await migrate(pg.url)
        engine = create_engine(pg.url)
        await Accounts(engine).set("bench", tier="pro", credits=1_000_000)
        await engine.dispose()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            limits = root / "limits.toml"
            limits.write_text(
                "[routes.operations]\nlimit = 1000000\nwindow_s = 60\nfail = \"open\"\n"
                "[routes.generate]\nlimit = 1000000\nwindow_s = 60\nfail = \"closed\"\n"
                "[routes.streams]\nconcurrency = 1000000\n"
            )
            env = {"DATABASE_URL": pg.url, "REDIS_URL": redis.url, "DATA_DIR": str(root),
                   "AUTH_JWT_SECRET": SECRET, "RATE_LIMITS": str(limits),
                   "ALLOW_LOCAL_PROVIDER": "true"}
            await streams(env, [int(n) for n in args.streams.split(",")], root)
            await overhead(env, args.runs, root)
    finally:
        redis.destroy()
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
