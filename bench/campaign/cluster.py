"""The deployment under load: PostgreSQL, Redis, the Gemini stand-in and two service
instances that can be killed and restarted; and what each part uses meanwhile."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from checkpoints import create_engine
from service import migrate
from tests.conftest import child_env
from tests.servers import PostgresServer, RedisServer, free_port, wait_for_port
from tests.service.conftest import SECRET, ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
#: Seconds after a restart during which the restarted server's outage code is declared.
OUTAGE_GRACE_S = 10.0
#: The stand-in may log an answer as delivered up to this long after its caller was
#: killed (it notices a closed connection late).
KILL_WINDOW_S = 5.0


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

    def outage_distance(self, at: float) -> str:
        """Where `at` falls against the restarts and kills (for a 5xx no outage explains)."""
        marks = [(f"{server} restart", start) for server, spans in self.outages.items()
                 for start, _end in spans]
        marks += [("kill", when) for when in self.killed.values()]
        if not marks:
            return "(no faults)"
        name, when = min(marks, key=lambda mark: abs(at - mark[1]))
        return f"({at - when:+.1f} s from the {name})"

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
