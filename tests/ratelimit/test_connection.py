"""How the limiter reaches Redis (redis-py, set up by `connect`), on real redis-servers and
on both event loops: the URL forms (password, ACL user, database, unix socket, TLS) work and
bad ones are refused at start-up; a Redis that stops answering costs one short timeout, a
dead one is noticed at once and so is its return; a cancelled decision never hands its
answer to another caller."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from ratelimit import (
    BackendUnavailable,
    Bucket,
    CircuitBreaker,
    Policies,
    RateLimitConfigError,
    RateLimiter,
    RateLimitUnavailable,
    RedisBackend,
    RoutePolicy,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 10, 60)
BUCKETS = (Bucket("generate", 10, 60_000_000),)


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the service runs on uvloop, whose transports differ."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


@pytest.fixture
def own_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this test's own, started with the test's `redis_args` marker."""
    marker = request.node.get_closest_marker("redis_args")
    server = RedisServer(extra_args=tuple(marker.args) if marker else ())
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def pause_redis(url: str, milliseconds: int) -> None:
    """Redis holds every client's commands for `milliseconds` (CLIENT PAUSE)."""
    admin = redis.asyncio.Redis.from_url(url)
    try:
        await admin.client_pause(milliseconds)
    finally:
        await admin.aclose()


async def test_a_cancelled_decision_never_hands_its_answer_to_the_next(
    own_redis: RedisServer,
) -> None:
    """A caller that gives up while Redis holds its request leaves nothing behind: the next
    decision, for another caller, gets its own answer."""
    limiter = RateLimiter.from_url(own_redis.url, Policies({"generate": GEN}), socket_timeout_s=5.0)
    try:
        await limiter.check("generate", "user:warm")
        await pause_redis(own_redis.url, 300)
        given_up = asyncio.ensure_future(limiter.check("generate", "user:a", cost=3))
        await asyncio.sleep(0.05)
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        assert (await limiter.check("generate", "user:b")).remaining == 9
        assert (await limiter.check("generate", "user:b", cost=2)).remaining == 7
    finally:
        await limiter.aclose()


async def test_more_concurrent_slot_holders_than_pooled_connections_all_get_an_answer(
    own_redis: RedisServer,
) -> None:
    """300 users take a concurrency slot at once, three times the connections the limiter
    keeps: the extra callers wait for a connection rather than being told that Redis is
    unavailable (which a fail-closed route answers with 503)."""
    policy = RoutePolicy("generate", 1000, 60, concurrency=1)
    limiter = RateLimiter.from_url(own_redis.url, Policies({"generate": policy}),
                                   socket_timeout_s=5.0)
    try:
        await limiter.check("generate", "user:warm")
        for _ in range(2):  # the second burst finds the pool warm and full
            slots = await asyncio.gather(
                *(limiter.acquire_slot("generate", f"user:{n}") for n in range(300)))
            assert all(slot.held for slot in slots)
            await asyncio.gather(*(slot.release() for slot in slots))
    finally:
        await limiter.aclose()


async def test_a_redis_that_stops_answering_costs_one_short_timeout_then_answers_again(
    own_redis: RedisServer,
) -> None:
    """While Redis answers nothing, every waiting decision fails after the socket timeout
    (not later, and not retried); once it answers, decisions come from it again."""
    limiter = RateLimiter.from_url(
        own_redis.url,
        Policies({"generate": GEN}),
        socket_timeout_s=0.1,
        breaker=CircuitBreaker(failure_threshold=100),
    )
    try:
        assert (await limiter.check("generate", "user:a")).source == "redis"
        await pause_redis(own_redis.url, 1000)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(limiter.check("generate", f"user:{i}") for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RateLimitUnavailable) for r in results)
        assert time.perf_counter() - started < 0.5
        await asyncio.sleep(max(0.0, started + 1.0 - time.perf_counter()))
        assert (await limiter.check("generate", "user:a")).remaining == 8
    finally:
        await limiter.aclose()


async def test_a_dead_redis_is_noticed_at_once_and_so_is_its_return(
    own_redis: RedisServer,
) -> None:
    """A killed Redis refuses connections: each call fails at once; restarted, it is used
    again by the same backend."""
    backend = RedisBackend.from_url(own_redis.url, socket_timeout_s=1.0)
    try:
        assert (await backend.charge("user:a", BUCKETS, 1)).remaining == (9,)
        own_redis.kill()
        for _ in range(2):
            started = time.perf_counter()
            with pytest.raises(BackendUnavailable):
                await backend.charge("user:a", BUCKETS, 1)
            assert time.perf_counter() - started < 0.5
        assert not await backend.ping()
        own_redis.start()
        assert await backend.ping()
        # The restarted Redis is empty: a full bucket again.
        assert (await backend.charge("user:a", BUCKETS, 1)).remaining == (9,)
    finally:
        await backend.aclose()


@pytest.mark.redis_args("--requirepass", "s3cret")
async def test_password_and_database_from_the_url(own_redis: RedisServer) -> None:
    """The password and database of the URL are used; a wrong password is an unavailable
    backend, not a crash."""
    base = f"127.0.0.1:{own_redis.port}"
    limiter = RateLimiter.from_url(
        f"redis://:s3cret@{base}/3", Policies({"generate": GEN}), socket_timeout_s=5.0
    )
    admin = redis.asyncio.Redis.from_url(f"redis://:s3cret@{base}/3")
    try:
        assert (await limiter.check("generate", "user:a")).remaining == 9
        assert await admin.exists("rl:{user:a}:generate:tokens") == 1
    finally:
        await admin.aclose()
        await limiter.aclose()
    wrong = RedisBackend.from_url(f"redis://:wrong@{base}/0", socket_timeout_s=5.0)
    try:
        with pytest.raises(BackendUnavailable, match="password"):
            await wrong.charge("user:a", BUCKETS, 1)
        assert not await wrong.ping()
    finally:
        await wrong.aclose()


@pytest.mark.redis_args(
    "--user", "limiter", "on", ">pw", "~rl:*", "+@all", "--user", "default", "off"
)
async def test_acl_user_from_the_url(own_redis: RedisServer) -> None:
    """A limiter on an ACL user works end to end."""
    url = f"redis://limiter:pw@127.0.0.1:{own_redis.port}/0"
    limiter = RateLimiter.from_url(url, Policies({"generate": GEN}), socket_timeout_s=5.0)
    try:
        assert (await limiter.check("generate", "user:a", cost=3)).remaining == 7
    finally:
        await limiter.aclose()


async def test_unix_socket(tmp_path: Path) -> None:
    """unix:///path?db=N reaches Redis over its socket."""
    sock = tmp_path / "redis.sock"
    server = RedisServer(extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    server.start()
    try:
        limiter = RateLimiter.from_url(
            f"unix://{sock}?db=1", Policies({"generate": GEN}), socket_timeout_s=5.0
        )
        try:
            assert (await limiter.check("generate", "user:a")).source == "redis"
            assert (await limiter.check("generate", "user:a")).remaining == 8
        finally:
            await limiter.aclose()
    finally:
        server.destroy()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(tmp_path: Path) -> None:
    """rediss:// verifies the server against `ssl_ca_certs`, or not at all when told, and
    an unverifiable server is an unavailable backend."""
    cert, key = _self_signed(tmp_path)
    server = RedisServer()
    server.extra_args = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-auth-clients", "no",
    )
    server.start()
    base = f"rediss://localhost:{server.port}/0"
    try:
        for url in (f"{base}?ssl_ca_certs={cert}", f"{base}?ssl_cert_reqs=none"):
            limiter = RateLimiter.from_url(url, Policies({"generate": GEN}), socket_timeout_s=5.0)
            try:
                assert (await limiter.check("generate", "user:a")).source == "redis"
            finally:
                await limiter.aclose()
        unverified = RedisBackend.from_url(base, socket_timeout_s=5.0, connect_timeout_s=5.0)
        try:
            with pytest.raises(BackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await unverified.charge("user:a", BUCKETS, 1)
        finally:
            await unverified.aclose()
    finally:
        server.destroy()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?socket_timeout=5", "unsupported option.*socket_timeout"),
        ("redis+cluster://127.0.0.1:6379?retry_on_timeout=yes", "unsupported option"),
        ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "unsupported option"),
        ("redis://127.0.0.1:6379/zero", "must be a number"),
        ("unix:///run/redis.sock?db=one", "must be a number"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe", "TLS option.*maybe"),
        ("redis://limiter@127.0.0.1:6379/0", "needs its password"),
        ("rediss://127.0.0.1:6379/0?ssl_ca_certs=/nonexistent/ca.pem", "No such file"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    """A URL the limiter cannot honour fails at start-up, saying why; options that would
    override its timeouts or retries are refused."""
    with pytest.raises(RateLimitConfigError, match=message):
        RateLimiter.from_url(url)


def test_timeouts_must_be_positive() -> None:
    """A zero timeout is refused at start-up."""
    with pytest.raises(RateLimitConfigError, match="timeout must be a positive"):
        RateLimiter.from_url("redis://127.0.0.1:6379/0", socket_timeout_s=0)


async def test_an_empty_password_sends_no_auth(redis_url: str) -> None:
    """`redis://:@host` is a Redis without a password, as redis-py reads it."""
    limiter = RateLimiter.from_url(
        redis_url.replace("://", "://:@", 1), Policies({"generate": GEN}), socket_timeout_s=5.0
    )
    try:
        assert (await limiter.check("generate", "user:a")).source == "redis"
    finally:
        await limiter.aclose()
