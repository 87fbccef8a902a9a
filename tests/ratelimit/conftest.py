"""Fixtures of the ratelimit suites: a fake clock, a real 3-node Redis Cluster, and a
limiter factory over every backend (memory, Redis, Redis Cluster)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from ratelimit import CircuitBreaker, Policies, RateLimiter, RedisBackend, RoutePolicy, connect
from tests.clock import FakeClock
from tests.servers import MissingBinary, RedisServer, free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


def policies(*routes: RoutePolicy) -> Policies:
    """Policies holding exactly `routes`."""
    return Policies({r.route_id: r for r in routes})


class Cluster:
    """Three redis-server processes in cluster mode, slots spread by `redis-cli --cluster`."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise MissingBinary("redis-cli was not found: install redis-tools")
        for _ in range(3):
            # The cluster bus listens on port + 10000: pick ports that leave room for it.
            port = free_port()
            while port > 55000:
                port = free_port()
            node = RedisServer(port=port)
            node.extra_args = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node.root / "nodes.conf"),
                "--cluster-node-timeout", "2000",
            )
            node.start()
            self.nodes.append(node)
        out = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, check=False, timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
        deadline = time.monotonic() + 30
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise TimeoutError("the cluster never reached cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def flush(self) -> None:
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                client.flushall()
            finally:
                client.close()

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A real 3-node Redis Cluster for the session."""
    cluster = Cluster()
    try:
        cluster.start()
    except MissingBinary as exc:
        cluster.destroy()
        pytest.skip(str(exc))
    except BaseException:
        cluster.destroy()
        raise
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def cluster_url(redis_cluster: Cluster) -> str:
    """The session's Redis Cluster, emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url


MakeLimiter = Callable[..., Awaitable[RateLimiter]]


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[MakeLimiter]:
    """A factory of limiters on each backend in turn (memory on the fake clock; one Redis
    and a Redis Cluster, each on the client `connect` makes)."""
    made: list[RateLimiter] = []
    kind = request.param
    url = "memory://"
    if kind != "memory":
        url = request.getfixturevalue("cluster_url" if kind == "cluster" else "redis_url")

    async def make(*routes: RoutePolicy, **options: Any) -> RateLimiter:
        pol = options.pop("policies", None) or policies(*routes)
        if kind == "memory":
            limiter = RateLimiter.from_url(url, pol, clock=clock, **options)
        else:
            # Generous timeouts: these tests check behaviour, not the outage policy.
            backend = RedisBackend(connect(url, socket_timeout_s=5.0), owns_client=True)
            options.setdefault("breaker", CircuitBreaker(failure_threshold=100))
            limiter = RateLimiter(backend, pol, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def user() -> str:
    """A user id of this test's own."""
    return uuid.uuid4().hex[:12]
