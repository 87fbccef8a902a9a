"""The load campaign: two service instances under a crowd of careful clients, then the
same crowd while instances are killed and Redis and PostgreSQL restart; the books are
checked after each phase.

    python bench/load.py [--users 200] [--seconds 60] [--phases load,faults]
                         [--ceiling 50,100,200,400 --ceiling-seconds 30]

Starts a throwaway PostgreSQL and Redis (as the tests do), a Gemini stand-in
(`bench/standin.py`: real PNGs after 1–4 s, some 503s and 429s with RetryInfo) and two
service instances (`python -m service serve`, one shared data directory). Each virtual
user is a ViewBait user of the `pro` tier doing what such users do, one thing at a time
with a short pause: generate over SSE, over plain JSON, and async + following the events
link (half of the followers on the other instance), edits, heatmaps, account reads,
cancels; streams are cut now and then and followed again with `Last-Event-ID`. Every
request carries its Idempotency-Key and is retried the way a careful client retries
(`Retry-After` honoured, the other instance tried when one does not answer).

Phases:
  load    the mix for --seconds;
  faults  the same mix while one instance is SIGKILLed and restarted every 15–20 s,
          Redis is restarted once and PostgreSQL once, and client streams are cut more
          often.
After each phase every virtual user finishes what it started (following each of its
operations to its end), then the ledger is checked (see `Ledger`) and one table printed:
throughput, latencies, answers by status and code, follower lag, and each check with its
count. --ceiling runs the load phase at each number of users and prints, per step, time
to first event and what each process and server used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.campaign.clients import Seen, User, campaign_client  # noqa: E402
from bench.campaign.cluster import Cluster, Sampler  # noqa: E402
from bench.campaign.ledger import CREDITS, Ledger, check_ledger  # noqa: E402
from checkpoints import create_engine  # noqa: E402
from service.accounts import Accounts  # noqa: E402

__all__ = ["Campaign", "Cluster", "check_ledger"]


@dataclass
class Campaign:
    cluster: Cluster
    http: httpx.AsyncClient
    seen: Seen = field(default_factory=Seen)
    cut_rate: float = 0.1
    follow_limit_s: float = 180.0

    async def phase(self, name: str, users: int, seconds: float, *, faults: bool,
                    drain_s: float = 180.0, kills: int | None = None,
                    restarts: bool = True) -> tuple[list[str], float]:
        """Run `users` virtual users for `seconds` (with `chaos`, if `faults`); wait for
        each to finish what it started. The users' names and the phase's length."""
        self.seen = Seen()
        self.cut_rate = 0.3 if faults else 0.1
        names = [f"{name}-{i:04d}" for i in range(users)]
        engine = create_engine(self.cluster.pg_url or "")
        try:
            for user in names:
                await Accounts(engine).set(user, tier="pro", credits=CREDITS)
        finally:
            await engine.dispose()
        crowd = [User(self, user, i) for i, user in enumerate(names)]
        started = time.monotonic()
        until = started + seconds
        tasks = [asyncio.create_task(u.run(until)) for u in crowd]
        chaos = (asyncio.create_task(self.chaos(until, kills=kills, restarts=restarts))
                 if faults else None)
        _, pending = await asyncio.wait(tasks, timeout=seconds + drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if chaos is not None:
            await chaos
        if pending:
            self.seen.abandoned.append(f"{len(pending)} users still busy after the drain")
        return names, time.monotonic() - started

    async def chaos(self, until: float, *, kills: int | None = None,
                    restarts: bool = True) -> None:
        """Kill an instance every 15–20 s, alternating (or `kills` times, evenly spread),
        and restart Redis and PostgreSQL once each, at a third and at two thirds of the
        phase (when this campaign started them)."""
        rng = random.Random(7)
        start = time.monotonic()
        length = until - start
        plan: list[tuple[float, str]] = []
        at, victim = 0.0, 0
        while True:
            at += rng.uniform(15, 20) if kills is None else length / (kills + 1)
            if at >= length or (kills is not None and len(plan) >= kills):
                break
            plan.append((at, f"kill {victim % 2}"))
            victim += 1
        if restarts and self.cluster.redis is not None:
            plan.append((length / 3, "redis"))
        if restarts and self.cluster.pg is not None:
            plan.append((2 * length / 3, "postgres"))
        for at, what in sorted(plan):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if what.startswith("kill"):
                await self.cluster.kill_and_restart(int(what.split()[1]))
            elif what == "redis":
                await self.cluster.restart_redis()
            else:
                await self.cluster.restart_postgres()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, users: int, seconds: float, seen: Seen, ledger: Ledger,
           cluster: Cluster) -> None:
    lag_same, lag_other = ledger.lag_same, ledger.lag_other
    print(f"\n== phase {name}: {users} users, {seconds:.0f} s (with the drain) ==")
    print(f"operations finished      {seen.finished:>8}   {seen.finished / seconds:8.1f}/s")
    print(f"creation latency (ms)    p50 {pct(seen.creation_s, .5) * 1e3:8.1f}"
          f"   p99 {pct(seen.creation_s, .99) * 1e3:8.1f}")
    print(f"first event (ms)         p50 {pct(seen.first_event_s, .5) * 1e3:8.1f}"
          f"   p99 {pct(seen.first_event_s, .99) * 1e3:8.1f}")
    print(f"follower lag, same instance (ms)  p50 {pct(lag_same, .5):7.1f}"
          f"   p99 {pct(lag_same, .99):7.1f}   ({len(lag_same)} events)")
    print(f"follower lag, other instance (ms) p50 {pct(lag_other, .5):7.1f}"
          f"   p99 {pct(lag_other, .99):7.1f}   ({len(lag_other)} events)")
    print(f"streams read {seen.streams}, cut and followed again {seen.reconnects}, "
          f"connections refused or dropped {seen.transport_errors}")
    if cluster.killed or cluster.outages:
        timeline = sorted([(t, f"kill {key}") for key, t in cluster.killed.items()]
                          + [(t, f"{server} down {end - t:.1f} s")
                             for server, spans in cluster.outages.items() for t, end in spans])
        print(f"faults: {len(cluster.killed)} instance kills, "
              + ", ".join(f"{k} restarted {len(v)}×" for k, v in cluster.outages.items())
              + " (" + ", ".join(f"{what} at {t - cluster.began:.0f} s" for t, what in timeline)
              + ")")
    print("answers by status and code:")
    for (status, code), n in sorted(seen.answers.items()):
        print(f"  {status} {code or '':<28} {n:>8}")
    if seen.terminal_errors:
        print("operations ended by an error, by code (from their streams):")
        for code, n in sorted(seen.terminal_errors.items()):
            print(f"  {code:<32} {n:>8}")
    print("ledger:")
    for check, n in ledger.facts.items():
        print(f"  {check:<50} {n:>8}")
    for check, n in ledger.checks.items():
        print(f"  {check:<50} {n:>8}  {'ok' if n == 0 else 'VIOLATED'}")
    for line in ledger.details[:20]:
        print(f"    {line}")


async def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vb-load-")))
        else:
            root = args.keep
            root.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(root, lease_ttl_s=args.lease_ttl)
        await cluster.start()
        failed = False
        try:
            async with campaign_client() as http:
                campaign = Campaign(cluster, http)
                for phase in filter(None, args.phases.split(",")):
                    names, length = await campaign.phase(phase, args.users, args.seconds,
                                                         faults=phase == "faults")
                    ledger = await check_ledger(cluster, campaign.seen, names, phase)
                    report(phase, args.users, length, campaign.seen, ledger, cluster)
                    failed |= not ledger.clean
                if args.ceiling:
                    await ceiling(campaign, [int(n) for n in args.ceiling.split(",")],
                                  args.ceiling_seconds)
        finally:
            await cluster.stop()
        return 1 if failed else 0


async def ceiling(campaign: Campaign, steps: list[int], seconds: float) -> None:
    print(f"\n== ceiling: the load mix for {seconds:.0f} s at each number of users ==")
    rows = []
    for n in steps:
        sampler = Sampler(campaign.cluster)
        figures = await sampler.measure(
            campaign.phase(f"ceiling{n}", n, seconds, faults=False, drain_s=120))
        seen = campaign.seen
        rows.append((n, seen, figures))
        print(f"{n:>5} users: {seen.finished / figures['_result'][1]:6.1f} ops/s, "
              f"first event p50 {pct(seen.first_event_s, .5) * 1e3:7.1f} ms "
              f"p99 {pct(seen.first_event_s, .99) * 1e3:7.1f} ms, "
              f"creation p99 {pct(seen.creation_s, .99) * 1e3:7.1f} ms")
        print("       " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items()
                                    if not k.startswith("_")))
    base = pct(rows[0][1].first_event_s, .99)
    for n, seen, _ in rows:
        p99 = pct(seen.first_event_s, .99)
        print(f"{n:>5} users: p99 first event {p99 / base:5.2f}× the {steps[0]}-user figure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--phases", default="load,faults")
    parser.add_argument("--lease-ttl", type=float, default=15.0,
                        help="LEASE_TTL_S of the instances (how soon a killed one's runs "
                             "are taken over)")
    parser.add_argument("--ceiling", default="", help="numbers of users, e.g. 50,100,200,400")
    parser.add_argument("--ceiling-seconds", type=float, default=30)
    parser.add_argument("--keep", type=Path, help="a folder to keep the logs and objects in")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(run(args)))
    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
