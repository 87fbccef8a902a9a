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
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from checkpoints import create_engine  # noqa: E402
from checkpoints._schema import operation_events, operation_steps, operations  # noqa: E402
from service import migrate  # noqa: E402
from service.accounts import EDIT_CREDITS, RESOLUTION_CREDITS, Accounts  # noqa: E402
from service.accounts._tables import accounts, credit_ledger, thumbnails  # noqa: E402
from service.operations._tables import heatmaps  # noqa: E402
from tests.conftest import child_env  # noqa: E402
from tests.servers import PostgresServer, RedisServer, free_port, wait_for_port  # noqa: E402
from tests.service.conftest import SECRET, ServiceProcess, token  # noqa: E402
from tests.service.sse import events  # noqa: E402

TERMINAL_STATUSES = {"succeeded", "partial", "failed", "cancelled"}
PROVIDER_CODES = {"PROVIDER_RATE_LIMITED", "PROVIDER_UNAVAILABLE", "PROVIDER_BILLING_EXHAUSTED",
                  "PROVIDER_TIMEOUT", "PROVIDER_BAD_OUTPUT", "PROVIDER_ERROR"}
#: Seconds after a restart during which the restarted server's outage code is declared.
OUTAGE_GRACE_S = 10.0
#: The stand-in may log an answer as delivered up to this long after its caller was
#: killed (it notices a closed connection late).
KILL_WINDOW_S = 5.0
CREDITS = 1_000_000


# --- the deployment -------------------------------------------------------------------


@dataclass
class Cluster:
    """PostgreSQL, Redis, the Gemini stand-in and two service instances.

    Each start of an instance gets its own Gemini key, so the stand-in's log tells which
    process (and which life of it) made each call."""

    root: Path
    lease_ttl_s: float = 15.0
    fail_rates: tuple[float, float] = (0.05, 0.05)
    #: Seconds the stand-in takes to answer: "min,max".
    provider_delay: str = "1,4"
    pg_url: str | None = None
    redis_url: str | None = None
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    standin: subprocess.Popen[bytes] | None = None
    standin_port: int = field(default_factory=free_port)
    instances: list[ServiceProcess] = field(default_factory=list)
    lives: dict[str, int] = field(default_factory=dict)
    #: Gemini key of an instance's life → when it was killed.
    killed: dict[str, float] = field(default_factory=dict)
    #: server name → (start, end) of each restart.
    outages: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    began: float = field(default_factory=time.time)

    @property
    def calls_log(self) -> Path:
        return self.root / "provider-calls.jsonl"

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]

    async def start(self) -> None:
        if self.pg_url is None:
            self.pg = PostgresServer()
            self.pg.init()
            self.pg.start()
            self.pg_url = self.pg.url
        if self.redis_url is None:
            self.redis = RedisServer()
            self.redis.start()
            self.redis_url = self.redis.url
        await migrate(self.pg_url)
        with (self.root / "standin.log").open("ab") as log:
            self.standin = subprocess.Popen(  # noqa: ASYNC220 (started once, returns at once)
                [sys.executable, str(ROOT / "bench" / "standin.py"), "--port",
                 str(self.standin_port), "--log", str(self.calls_log),
                 "--fail-503", str(self.fail_rates[0]), "--fail-429", str(self.fail_rates[1]),
                 "--delay", self.provider_delay],
                cwd=ROOT, env=child_env(), stdout=log, stderr=log,
            )
        await asyncio.to_thread(wait_for_port, self.standin_port, 60.0, self.standin)
        for name in ("a", "b"):
            self.instances.append(ServiceProcess({}, log_path=self.root / f"service-{name}.log"))
            await self.start_instance(len(self.instances) - 1)

    def key(self, index: int) -> str:
        name = "ab"[index]
        return f"{name}{self.lives.get(name, 0)}"

    def env(self, index: int) -> dict[str, str]:
        assert self.pg_url is not None
        assert self.redis_url is not None
        return {
            "DATABASE_URL": self.pg_url, "REDIS_URL": self.redis_url,
            "DATA_DIR": str(self.root / "shared"), "AUTH_JWT_SECRET": SECRET,
            "IMAGE_PROVIDERS": "gemini", "GEMINI_API_KEY": self.key(index),
            "GEMINI_BASE_URL": f"http://127.0.0.1:{self.standin_port}",
            "INSTANCE_ID": self.key(index), "LEASE_TTL_S": str(self.lease_ttl_s),
            "SHUTDOWN_GRACE_S": "5",
        }

    async def start_instance(self, index: int) -> None:
        name = "ab"[index]
        self.lives[name] = self.lives.get(name, 0) + 1
        instance = self.instances[index]
        instance.env = self.env(index)
        await asyncio.to_thread(instance.start)

    async def kill_and_restart(self, index: int) -> None:
        self.killed[self.key(index)] = time.time()
        self.instances[index].kill()
        await asyncio.sleep(1.0)  # the way a supervisor takes a moment to restart it
        await self.start_instance(index)

    async def restart_redis(self) -> None:
        assert self.redis is not None
        started = time.time()
        self.redis.kill()
        await asyncio.sleep(2.0)
        await asyncio.to_thread(self.redis.start)
        self.outages["redis"].append((started, time.time()))

    async def restart_postgres(self) -> None:
        assert self.pg is not None
        started = time.time()
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(self.pg.start)
        self.outages["postgres"].append((started, time.time()))

    def cut_by_kill(self, call: dict[str, Any], again: dict[str, Any] | None) -> bool:
        """Whether a delivered provider answer died with its process before it was
        checkpointed, so that the render had to be made `again` (the next delivery of the
        same render, if known): its process was killed after the answer (or just before:
        the stand-in notices a closed connection late) and before the render was made
        again. A render made again while the first one's process still lived is a
        repeat, not a cut."""
        killed = self.killed.get(call["key"])
        return (killed is not None and killed > call["t"] - KILL_WINDOW_S
                and (again is None or killed < again["t"]))

    def in_outage(self, server: str, at: float) -> bool:
        return any(start <= at <= end + OUTAGE_GRACE_S for start, end in self.outages[server])

    def pids(self) -> dict[str, list[int]]:
        """Process ids of each part (PostgreSQL: the postmaster and its backends)."""
        parts: dict[str, list[int]] = {"client": [os.getpid()]}
        for index, instance in enumerate(self.instances):
            if instance.process is not None and instance.process.poll() is None:
                parts[f"instance {'ab'[index]}"] = [instance.process.pid]
        if self.pg is not None and (pid := self.pg.pid()) is not None:
            parts["postgres"] = [pid, *_children(pid)]
        if self.redis is not None and self.redis.process is not None:
            parts["redis"] = [self.redis.process.pid]
        if self.standin is not None:
            parts["stand-in"] = [self.standin.pid]
        return parts

    async def stop(self) -> None:
        for instance in self.instances:
            instance.kill()
        if self.standin is not None:
            self.standin.kill()
            self.standin.wait(10)
        if self.redis is not None:
            self.redis.destroy()
        if self.pg is not None:
            self.pg.destroy()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- what the clients saw ---------------------------------------------------------------


@dataclass
class Seen:
    """Everything the virtual users of one phase observed."""

    answers: Counter[tuple[int, str]] = field(default_factory=Counter)
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)
    transport_errors: int = 0
    terminal_errors: Counter[str] = field(default_factory=Counter)
    creation_s: list[float] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)
    #: (operation id, seq, received at, connected at, on the other instance)
    received: list[tuple[str, int, float, float, bool]] = field(default_factory=list)
    stream_faults: list[str] = field(default_factory=list)
    operations: dict[str, str] = field(default_factory=dict)  # id → user
    finished: int = 0
    abandoned: list[str] = field(default_factory=list)
    streams: int = 0
    reconnects: int = 0

    def answer(self, response: httpx.Response) -> str:
        code = ""
        if response.status_code >= 400:
            with contextlib.suppress(ValueError, AttributeError):
                code = str(response.json().get("code", ""))
        self.answers[(response.status_code, code)] += 1
        if response.status_code >= 500:
            self.server_errors.append((time.time(), response.status_code, code))
        return code


class Cut(Exception):
    """The client cut its stream on purpose (to follow it again with Last-Event-ID)."""


def retry_after(response: httpx.Response) -> float:
    try:
        return max(0.2, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


@dataclass
class Follow:
    """One client's view of one operation's event log, across connections."""

    op_id: str
    #: The 202 answer's `links.events` (it carries its own token, as EventSource needs).
    link: str | None = None
    last: int = 0
    final: bool = False
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class User:
    """A careful client: one thing at a time, retries with the same Idempotency-Key."""

    def __init__(self, campaign: Campaign, name: str, index: int) -> None:
        self.c, self.name = campaign, name
        self.rng = random.Random(f"{name}")
        self.headers = {"Authorization": f"Bearer {token(name, ttl_s=24 * 3600)}"}
        self.thumbnails: list[str] = []
        self.serial = itertools.count(1)
        self.home = index % 2  # the instance this user's requests go to first

    @property
    def seen(self) -> Seen:
        return self.c.seen

    def base(self, instance: int) -> str:
        return self.c.cluster.urls[instance % 2]

    def key(self) -> str:
        return f"{self.name}-{next(self.serial)}"

    async def run(self, until: float) -> None:
        actions = [(self.generate_stream, 25), (self.generate_json, 15),
                   (self.generate_async, 20), (self.edit, 10), (self.heatmap, 8),
                   (self.account, 12), (self.cancel, 10)]
        choices, weights = zip(*actions, strict=True)
        await asyncio.sleep(self.rng.uniform(0, 2))
        while time.monotonic() < until:
            action = self.rng.choices(choices, weights)[0]
            await action()
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))

    # -- requests ------------------------------------------------------------------

    async def request(self, method: str, path: str, *, instance: int | None = None,
                      **kwargs: Any) -> httpx.Response | None:
        """A JSON request, retried on 429/503 (after Retry-After) and on the other
        instance when one does not answer. None when it never got an answer that
        settles it."""
        instance = self.home if instance is None else instance
        for attempt in range(12):
            try:
                response = await self.c.http.request(
                    method, self.base(instance) + path, **kwargs)
            except httpx.TransportError:
                self.seen.transport_errors += 1
                instance += 1
                await asyncio.sleep(min(4.0, 0.2 * 2 ** attempt) * self.rng.random())
                continue
            code = self.seen.answer(response)
            if response.status_code in (429, 503) and code not in PROVIDER_CODES:
                await asyncio.sleep(min(retry_after(response), 10.0) + self.rng.random())
                continue
            return response
        return None

    def headers_with(self, **extra: str) -> dict[str, str]:
        return {**self.headers, **extra}

    async def create_stream(self, path: str, body: dict[str, Any], key: str) -> None:
        """Create over SSE; a stream cut before the operation's id is known is created
        again with the same key (which replays it)."""
        headers = self.headers_with(**{"Idempotency-Key": key, "Accept": "text/event-stream"})
        instance = self.home
        for attempt in range(12):
            started = time.monotonic()
            follow: Follow | None = None
            try:
                async with self.c.http.stream("POST", self.base(instance) + path, json=body,
                                              headers=headers) as response:
                    self.seen.creation_s.append(time.monotonic() - started)
                    if response.status_code != 200:
                        await response.aread()
                        code = self.seen.answer(response)
                        if response.status_code in (429, 503) and code not in PROVIDER_CODES:
                            await asyncio.sleep(min(retry_after(response), 10) + self.rng.random())
                            continue
                        return
                    self.seen.answer(response)
                    follow = Follow("")
                    await self.read(response, follow, instance, cross=False, started=started)
            except (httpx.TransportError, Cut) as exc:
                if isinstance(exc, httpx.TransportError):
                    self.seen.transport_errors += 1
                if follow is None or not follow.op_id:
                    instance += 1
                    await asyncio.sleep(min(4.0, 0.2 * 2 ** attempt) * self.rng.random())
                    continue
            assert follow is not None
            if follow.op_id:
                await self.follow(follow, instance + self.rng.randint(0, 1))
            return

    async def read(self, response: httpx.Response, follow: Follow, instance: int, *,
                   cross: bool, started: float) -> None:
        """Read a stream into `follow`, checking its ids; maybe cut it on purpose."""
        self.seen.streams += 1
        connected = time.time()
        expected = follow.last + 1
        cut_after = (self.rng.randint(1, 4) if self.rng.random() < self.c.cut_rate else None)
        count = 0
        async for event in events(response):
            if count == 0:
                self.seen.first_event_s.append(time.monotonic() - started)
            count += 1
            if not follow.op_id:
                follow.op_id = event.data.get("operation_id", "")
                self.seen.operations.setdefault(follow.op_id, self.name)
            if event.id != expected:
                self.seen.stream_faults.append(
                    f"{follow.op_id}: expected id {expected}, got {event.id}")
            expected = event.id + 1
            follow.last = event.id
            self.seen.received.append((follow.op_id, event.id, time.time(), connected, cross))
            follow.final = event.event in ("result", "error")
            if event.event == "error":
                follow.error = event.data
            elif event.event == "result":
                follow.result = event.data.get("operation")
            if cut_after is not None and count >= cut_after and not follow.final:
                self.seen.reconnects += 1
                raise Cut

    async def follow(self, follow: Follow, instance: int) -> None:
        """Follow an operation's events to its final event, reconnecting with
        Last-Event-ID; resume it once if it failed retryably."""
        resumed = False
        deadline = time.monotonic() + self.c.follow_limit_s
        attempt = 0
        while time.monotonic() < deadline:
            if follow.final:
                if (follow.error and follow.error.get("retryable") and not resumed
                        and follow.error.get("code") != "OPERATION_CANCELLED"):
                    resumed = True
                    await self.resume(follow, instance)
                    continue
                break
            path = follow.link or f"/v1/operations/{follow.op_id}/events"
            headers = {} if follow.link else dict(self.headers)
            if follow.last:
                headers["Last-Event-ID"] = str(follow.last)
            started = time.monotonic()
            try:
                async with self.c.http.stream("GET", self.base(instance) + path,
                                              headers=headers) as response:
                    if response.status_code == 204:
                        self.seen.answer(response)
                        follow.final = True
                        break
                    if response.status_code != 200:
                        await response.aread()
                        code = self.seen.answer(response)
                        if response.status_code in (429, 503):
                            await asyncio.sleep(min(retry_after(response), 10) + self.rng.random())
                            continue
                        if response.status_code == 401 and follow.link:
                            follow.link = None  # the link's token expired: the bearer then
                            continue
                        self.seen.stream_faults.append(
                            f"{follow.op_id}: events answered {response.status_code} {code}")
                        break
                    self.seen.answer(response)
                    await self.read(response, follow, instance,
                                    cross=instance % 2 != self.home, started=started)
                    attempt = 0
            except Cut:
                instance += self.rng.randint(0, 1)
            except httpx.TransportError:
                self.seen.transport_errors += 1
                instance += 1
                attempt += 1
                await asyncio.sleep(min(4.0, 0.2 * 2 ** attempt) * self.rng.random())
        if follow.final:
            self.seen.finished += 1
            result = follow.result or {}
            self.thumbnails += [t["id"] for t in (result.get("result") or {}).get(
                "thumbnails", [])]
            if follow.error:
                self.seen.terminal_errors[str(follow.error.get("code"))] += 1
        else:
            self.seen.abandoned.append(follow.op_id)

    async def resume(self, follow: Follow, instance: int) -> None:
        response = await self.request(
            "POST", f"/v1/operations/{follow.op_id}/resume", instance=instance,
            headers=self.headers_with(Accept="application/json", Prefer="respond-async"))
        if response is not None and response.status_code == 202:
            follow.final = False
            follow.error = None

    # -- what users do ---------------------------------------------------------------

    def generation(self, key: str) -> dict[str, Any]:
        return {"title": f"Load test {self.rng.randint(1, 999)} #{key}",
                "variations": self.rng.choice([1, 1, 1, 2]),
                "style": self.rng.choice(["bold", "minimal", "cinematic"])}

    async def generate_stream(self) -> None:
        key = self.key()
        await self.create_stream("/v1/thumbnails", self.generation(key), key)

    async def created(self, path: str, body: dict[str, Any], key: str, *,
                      prefer_async: bool) -> Follow | None:
        """Create with JSON (async or waiting for the end); follow to the end if the
        answer is not the end already."""
        headers = self.headers_with(**{"Idempotency-Key": key})
        if prefer_async:
            headers["Prefer"] = "respond-async"
        started = time.monotonic()
        response = await self.request("POST", path, json=body, headers=headers)
        if response is None:
            return None
        if prefer_async:  # a creation waiting for the run's end is not a latency
            self.seen.creation_s.append(time.monotonic() - started)
        if response.status_code == 200:
            operation = response.json()["operation"]
            self.seen.operations.setdefault(operation["id"], self.name)
            self.seen.finished += 1
            self.thumbnails += [t["id"] for t in (operation.get("result") or {}).get(
                "thumbnails", [])]
            return None
        if response.status_code != 202:
            return None
        answer = response.json()
        follow = Follow(answer["operation_id"], link=answer["links"]["events"])
        self.seen.operations.setdefault(follow.op_id, self.name)
        return follow

    async def generate_json(self) -> None:
        key = self.key()
        follow = await self.created("/v1/thumbnails", self.generation(key), key,
                                    prefer_async=False)
        if follow is not None:
            await self.follow(follow, self.home)

    async def generate_async(self) -> None:
        key = self.key()
        response_follow = await self.created(
            "/v1/thumbnails", self.generation(key), key,
            prefer_async=True)
        if response_follow is not None:
            other = self.rng.random() < 0.5
            await self.follow(response_follow, self.home + (1 if other else 0))

    async def edit(self) -> None:
        if not self.thumbnails:
            await self.generate_async()
            return
        key = self.key()
        source = self.rng.choice(self.thumbnails)
        body = {"prompt": f"Make the colours pop #{key}"}
        if self.rng.random() < 0.5:
            await self.create_stream(f"/v1/thumbnails/{source}/edits", body, key)
            return
        follow = await self.created(f"/v1/thumbnails/{source}/edits", body, key,
                                    prefer_async=False)
        if follow is not None:
            await self.follow(follow, self.home)

    async def heatmap(self) -> None:
        if not self.thumbnails:
            await self.account()
            return
        key = self.key()
        follow = await self.created(
            "/v1/heatmaps", {"thumbnail_id": self.rng.choice(self.thumbnails)}, key,
            prefer_async=True)
        if follow is not None:
            await self.follow(follow, self.home)

    async def account(self) -> None:
        await self.request("GET", "/v1/account", headers=self.headers)

    async def cancel(self) -> None:
        key = self.key()
        follow = await self.created(
            "/v1/thumbnails", {**self.generation(key), "variations": 2}, key,
            prefer_async=True)
        if follow is None:
            return
        await asyncio.sleep(self.rng.uniform(0.3, 3.0))
        await self.request("POST", f"/v1/operations/{follow.op_id}/cancel",
                           headers=self.headers)
        await self.follow(follow, self.home)


# --- the ledger -------------------------------------------------------------------------


@dataclass
class Ledger:
    """The books after a phase, for its users: each check counts its violations."""

    checks: dict[str, int]
    facts: dict[str, int]
    details: list[str]
    #: Follower lag (ms) of live events: on the instance the client created on, and on
    #: the other one.
    lag_same: list[float]
    lag_other: list[float]

    @property
    def clean(self) -> bool:
        return not any(self.checks.values())


def _provider_calls(path: Path, prefix: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in calls if c["kind"] == "heatmap" or (c["nonce"] or "").startswith(prefix)]


async def settled(engine: Any, users: list[str], limit_s: float) -> float:
    """Wait until every operation of `users` has ended (a run whose instance died and
    whose client never learnt its id is taken over by an instance on its own, within a
    lease period or two), for up to `limit_s`; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        async with engine.connect() as conn:
            unfinished = await conn.scalar(sa.select(sa.func.count()).where(
                operations.c.user_id.in_(users),
                operations.c.status.not_in(TERMINAL_STATUSES)))
        if not unfinished:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def check_ledger(cluster: Cluster, seen: Seen, users: list[str], prefix: str) -> Ledger:
    assert cluster.pg_url is not None
    engine = create_engine(cluster.pg_url)
    checks: dict[str, int] = {}
    facts: dict[str, int] = {}
    details: list[str] = []
    try:
        facts["seconds until every operation had ended"] = round(
            await settled(engine, users, 3 * cluster.lease_ttl_s))
        async with engine.connect() as conn:
            ops = (await conn.execute(sa.select(
                operations.c.id, operations.c.user_id, operations.c.kind, operations.c.status,
            ).where(operations.c.user_id.in_(users)))).all()
            rows = (await conn.execute(sa.select(
                thumbnails.c.id, thumbnails.c.user_id, thumbnails.c.resolution,
                thumbnails.c.image_key, thumbnails.c.image_400w_key,
                thumbnails.c.image_800w_key, operations.c.kind,
            ).join(operations, operations.c.id == thumbnails.c.operation_id)
              .where(thumbnails.c.user_id.in_(users)))).all()
            balances = dict((await conn.execute(sa.select(
                accounts.c.user_id, accounts.c.credits_remaining,
            ).where(accounts.c.user_id.in_(users)))).all())
            ledger_sums = dict((await conn.execute(sa.select(
                credit_ledger.c.user_id, sa.func.sum(credit_ledger.c.delta),
            ).where(credit_ledger.c.user_id.in_(users)).group_by(credit_ledger.c.user_id))).all())
            heatmap_renders = (await conn.execute(sa.select(
                operation_steps.c.operation_id, operation_steps.c.output,
            ).join(operations, operations.c.id == operation_steps.c.operation_id).where(
                operations.c.user_id.in_(users), operations.c.kind == "heatmap",
                operation_steps.c.key.in_(["load", "render"]),
                operation_steps.c.status == "completed",
            ))).all()
            heatmap_keys = set((await conn.execute(sa.select(heatmaps.c.heatmap_key))).scalars())
            event_times: dict[tuple[str, int], float] = {}
            for op_id, seq, at in (await conn.execute(sa.select(
                operation_events.c.operation_id, operation_events.c.seq,
                operation_events.c.created_at,
            ).where(operation_events.c.operation_id.in_(
                sa.select(operations.c.id).where(operations.c.user_id.in_(users)))))).all():
                event_times[(op_id, seq)] = at.timestamp()
    finally:
        await engine.dispose()

    facts["operations"] = len(ops)
    facts["operations seen by clients"] = len(seen.operations)
    by_status = Counter(op.status for op in ops)
    for status, n in sorted(by_status.items()):
        facts[f"  {status}"] = n
    not_terminal = [op.id for op in ops if op.status not in TERMINAL_STATUSES]
    checks["operations not terminal"] = len(not_terminal)
    details += [f"not terminal: {op_id}" for op_id in not_terminal[:5]]
    unknown = set(seen.operations) - {op.id for op in ops}
    checks["operations a client saw that have no row"] = len(unknown)

    # Renders: each variation of each operation delivered once, except where the process
    # that got the first delivery was killed before it could record it.
    calls = _provider_calls(cluster.calls_log, prefix)
    delivered = [c for c in calls if c["outcome"] == "image"]
    facts["provider calls"] = len(calls)
    facts["  of them images"] = len(delivered)
    facts["  of them 429/503"] = sum(c["outcome"] in ("429", "503") for c in calls)
    renders: dict[tuple[str, str, int | None], list[dict[str, Any]]] = defaultdict(list)
    for call in delivered:
        if call["kind"] in ("generate", "edit"):
            renders[(call["kind"], call["nonce"], call["variation"])].append(call)
    twice = excused = 0
    for key, got in renders.items():
        for earlier, again in itertools.pairwise(got):
            if cluster.cut_by_kill(earlier, again):
                excused += 1
            else:
                twice += 1
                details.append(f"rendered twice: {key}: " + ", ".join(
                    f"{c['key']} at {c['t'] - cluster.began:.1f} s" for c in got))
    heatmaps_by_image: Counter[str] = Counter()
    for outputs in _heatmap_outputs(heatmap_renders).values():
        if not outputs.get("render", {}).get("cached", True):
            heatmaps_by_image[outputs["load"]["sha256"]] += 1
    heatmap_calls = Counter(c["image"] for c in delivered if c["kind"] == "heatmap"
                            and c["image"] in heatmaps_by_image)
    for image, n in heatmap_calls.items():
        extra = n - heatmaps_by_image[image]
        if extra > 0:
            excusable = sum(1 for c in delivered if c["kind"] == "heatmap" and c["image"] == image
                            and cluster.cut_by_kill(c, None))
            excused += min(extra, excusable)
            twice += max(0, extra - excusable)
    checks["variations rendered twice (not cut by a kill)"] = twice
    facts["renders repeated after a kill"] = excused

    # Credits: what each user was charged is what its delivered thumbnails cost.
    cost: Counter[str] = Counter()
    for row in rows:
        cost[row.user_id] += (EDIT_CREDITS if row.kind == "thumbnail.edit"
                              else RESOLUTION_CREDITS[row.resolution])
    wrong = [u for u in users if u in balances and CREDITS - balances[u] != cost[u]]
    wrong_ledger = [u for u in users if u in balances and -(ledger_sums.get(u) or 0) != cost[u]]
    checks["users charged other than their thumbnails' cost"] = len(wrong)
    checks["users whose credit ledger disagrees"] = len(wrong_ledger)
    details += [f"credits: {u} charged {CREDITS - balances[u]}, delivered {cost[u]}"
                for u in wrong[:5]]
    facts["thumbnails delivered"] = len(rows)
    facts["credits charged"] = sum(CREDITS - b for b in balances.values())

    # Objects: every stored file belongs to a row.
    owned = {k for row in rows for k in (row.image_key, row.image_400w_key, row.image_800w_key)}
    stored_root = cluster.root / "shared" / "objects"
    orphans = 0
    user_segments = set(users)
    for path in _files(stored_root):
        key = path.relative_to(stored_root).as_posix()
        if key.startswith("thumbnails/"):
            if key.split("/")[1] in user_segments and key not in owned:
                orphans += 1
                details.append(f"object without a row: {key}")
        elif key.startswith("heatmaps/") and key not in heatmap_keys:
            orphans += 1
            details.append(f"object without a row: {key}")
    checks["stored objects without a row"] = orphans

    checks["event id gaps or duplicates in client streams"] = len(seen.stream_faults)
    details += seen.stream_faults[:5]
    unexplained = [(t, s, c) for t, s, c in seen.server_errors
                   if not (c in PROVIDER_CODES
                           or (c == "DATABASE_UNAVAILABLE" and cluster.in_outage("postgres", t))
                           or (c == "RATE_LIMIT_UNAVAILABLE" and cluster.in_outage("redis", t)))]
    checks["5xx not a provider fault or declared outage"] = len(unexplained)
    details += [f"5xx: {s} {c}" for _, s, c in unexplained[:5]]
    checks["operations a client gave up following"] = len(seen.abandoned)
    return Ledger(checks, facts, details, *_lags(seen, event_times))


def _heatmap_outputs(rows: list[Any]) -> dict[str, dict[str, Any]]:
    outputs: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        output = row.output
        if isinstance(output, str):
            output = json.loads(output)
        step = "render" if "heatmap_key" in (output or {}) else "load"
        outputs[row.operation_id][step] = output or {}
    return {k: v for k, v in outputs.items() if "load" in v and "render" in v}


def _files(root: Path) -> Iterator[Path]:
    if root.exists():
        yield from (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _lags(seen: Seen, event_times: dict[tuple[str, int], float]
          ) -> tuple[list[float], list[float]]:
    """Follower lag (ms): receive time minus the event's commit time, for events
    committed after the stream connected (live ones, not replays)."""
    same: list[float] = []
    other: list[float] = []
    for op_id, seq, received, connected, cross in seen.received:
        at = event_times.get((op_id, seq))
        if at is None or at < connected:
            continue
        (other if cross else same).append(max(0.0, received - at) * 1e3)
    return same, other


# --- the campaign -----------------------------------------------------------------------


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


class Sampler:
    """CPU of each part, PostgreSQL commits and its NOTIFY queue, Redis commands and
    database connections, sampled once a second."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cpu: dict[str, float] = defaultdict(float)
        self.notify_max = 0.0
        self.connections_max: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._last: dict[int, float] = {}

    async def _db_figures(self, conn: Any) -> tuple[int, float, dict[str, int]]:
        commits = await conn.scalar(sa.text("SELECT sum(xact_commit) FROM pg_stat_database"))
        usage = await conn.scalar(sa.text("SELECT pg_notification_queue_usage()"))
        states = dict((await conn.execute(sa.text(
            "SELECT coalesce(state, 'other'), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' GROUP BY 1"))).all())
        return int(commits or 0), float(usage or 0), states

    async def measure(self, seconds_of: Any) -> dict[str, float]:
        import redis.asyncio as aioredis

        engine = create_engine(self.cluster.pg_url or "")
        client = aioredis.from_url(self.cluster.redis_url or "")
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                commits0, _, _ = await self._db_figures(conn)
                redis0 = (await client.info("stats"))["total_commands_processed"]
                cpu0 = {part: sum(map(_cpu_seconds, pids))
                        for part, pids in self.cluster.pids().items()}
                started = time.monotonic()
                task = asyncio.create_task(seconds_of)
                while not task.done():
                    await asyncio.sleep(1.0)
                    _, usage, states = await self._db_figures(conn)
                    self.notify_max = max(self.notify_max, usage)
                    for state, n in states.items():
                        self.connections_max[state] = max(self.connections_max[state], n)
                result = await task
                elapsed = time.monotonic() - started
                commits1, _, _ = await self._db_figures(conn)
                redis1 = (await client.info("stats"))["total_commands_processed"]
                cpu1 = {part: sum(map(_cpu_seconds, pids))
                        for part, pids in self.cluster.pids().items()}
        finally:
            await engine.dispose()
            await client.aclose()
        figures = {f"cpu {part} %": (cpu1.get(part, 0) - cpu0.get(part, 0)) / elapsed * 100
                   for part in cpu0}
        figures["pg commits/s"] = (commits1 - commits0) / elapsed
        figures["redis commands/s"] = (redis1 - redis0) / elapsed
        figures["notify queue max %"] = self.notify_max * 100
        for state, n in self.connections_max.items():
            figures[f"pg connections {state} max"] = n
        figures["_result"] = result
        return figures


async def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vb-load-")))
        else:
            root = args.keep
            root.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(root, lease_ttl_s=args.lease_ttl)
        await cluster.start()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        failed = False
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=90),
                                         limits=limits) as http:
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
