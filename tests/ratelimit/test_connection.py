"""The limiter's multiplexed Redis connection on real redis-servers: replies reach the right
callers under concurrency and cancellation, failures are short and never retried, and the
URL forms (password, ACL user, database, unix socket, TLS) work."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError,
)

from ratelimit import (
    Policies,
    RateLimitConfigError,
    RateLimiter,
    RedisConnection,
    RoutePolicy,
    connect,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 10, 60)


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the service runs on uvloop, whose transports differ."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


@pytest.fixture
def own_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this test's own, started with the test's `extra_args` marker."""
    marker = request.node.get_closest_marker("redis_args")
    server = RedisServer(extra_args=tuple(marker.args) if marker else ())
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    client = RedisConnection.from_url(redis_url, socket_timeout_s=5.0)
    try:
        replies = await asyncio.gather(*(client.execute("ECHO", f"n{i}") for i in range(500)))
        assert replies == [f"n{i}".encode() for i in range(500)]
    finally:
        await client.aclose()


async def test_a_cancelled_caller_never_hands_its_reply_to_the_next(redis_url: str) -> None:
    """BLPOP holds the connection for 0.3 s; its caller gives up after 0.05 s. The PING
    behind it must get PONG, not the BLPOP's nil."""
    client = RedisConnection.from_url(redis_url, socket_timeout_s=5.0)
    try:
        blocked = asyncio.ensure_future(client.execute("BLPOP", "nothing-here", "0.3"))
        await asyncio.sleep(0.05)
        blocked.cancel()
        assert await client.execute("PING") == b"PONG"
        assert await client.execute("ECHO", "after") == b"after"
    finally:
        await client.aclose()


async def test_error_replies_are_redis_py_errors_and_keep_the_connection(redis_url: str) -> None:
    client = RedisConnection.from_url(redis_url, socket_timeout_s=5.0)
    try:
        await client.execute("SET", "conn:text", "abc")
        with pytest.raises(ResponseError, match="not an integer"):
            await client.execute("INCR", "conn:text")
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 0)
        sha = await client.script_load("return 7")
        assert await client.evalsha(sha, 0) == 7
    finally:
        await client.aclose()


async def test_a_silent_redis_times_out_every_waiting_command_then_reconnects(
    redis_url: str,
) -> None:
    """A reply that does not come within the socket timeout fails its command and those
    behind it at once (the connection is dropped); the next command connects anew."""
    client = RedisConnection.from_url(redis_url, socket_timeout_s=0.1)
    try:
        assert await client.ping()
        loop = asyncio.get_running_loop()
        started = loop.time()
        blocked = client.execute("BLPOP", "nothing-here", "2")
        behind = client.execute("PING")
        with pytest.raises(TimeoutError):
            await blocked
        with pytest.raises(TimeoutError):
            await behind
        assert loop.time() - started < 1.0
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_dead_redis_is_a_connection_error_and_its_return_is_noticed(
    own_redis: RedisServer,
) -> None:
    client = RedisConnection.from_url(own_redis.url, socket_timeout_s=1.0)
    try:
        assert await client.ping()
        own_redis.kill()
        with pytest.raises(ConnectionError):
            await client.ping()
        with pytest.raises(ConnectionError):  # refused at once: nothing listens
            await client.ping()
        own_redis.start()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_callers_arriving_together_share_one_connection(redis_url: str) -> None:
    client = RedisConnection.from_url(redis_url, socket_timeout_s=5.0)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        name = "conn-test-shared"
        await asyncio.gather(
            client.execute("CLIENT", "SETNAME", name),
            *(client.execute("PING") for _ in range(50)),
        )
        clients = await admin.client_list()
        assert sum(1 for c in clients if c["name"] == name) == 1
    finally:
        await admin.aclose()
        await client.aclose()


@pytest.mark.redis_args("--requirepass", "s3cret")
async def test_password_and_database_from_the_url(own_redis: RedisServer) -> None:
    base = f"127.0.0.1:{own_redis.port}"
    client = RedisConnection.from_url(f"redis://:s3cret@{base}/3", socket_timeout_s=5.0)
    admin = redis.asyncio.Redis.from_url(f"redis://:s3cret@{base}/3")
    try:
        await client.execute("SET", "where", "three")
        assert await admin.get("where") == b"three"
    finally:
        await admin.aclose()
        await client.aclose()
    wrong = RedisConnection.from_url(f"redis://:wrong@{base}/0", socket_timeout_s=5.0)
    with pytest.raises(AuthenticationError):
        await wrong.ping()
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
    """rediss:// verifies the server against `ssl_ca_certs`, or not at all when told."""
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
            client = connect(url, socket_timeout_s=5.0)
            try:
                assert await client.ping()
            finally:
                await client.aclose()
        unverified = connect(base, socket_timeout_s=5.0, connect_timeout_s=5.0)
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await unverified.ping()
        await unverified.aclose()
    finally:
        server.destroy()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?socket_timeout=5", "unsupported option"),
        ("redis://127.0.0.1:6379/zero", "must be a number"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://limiter@127.0.0.1:6379/0", "needs its password"),
        ("rediss://127.0.0.1:6379/0?ssl_ca_certs=/nonexistent/ca.pem", "No such file"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(RateLimitConfigError, match=message):
        RateLimiter.from_url(url)


async def test_closing_while_connecting_fails_the_callers_and_keeps_nothing(
    redis_url: str,
) -> None:
    client = RedisConnection.from_url(redis_url, socket_timeout_s=5.0)
    waiting = [asyncio.ensure_future(client.ping()) for _ in range(3)]
    await asyncio.sleep(0)  # they are waiting for the connection now
    await client.aclose()
    for task in waiting:
        with pytest.raises(ConnectionError, match="closed"):
            await task
    with pytest.raises(ConnectionError, match="closed"):
        await client.ping()


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(RateLimitConfigError, match="timeout must be a positive"):
        RateLimiter.from_url("redis://127.0.0.1:6379/0", socket_timeout_s=0)


async def test_an_empty_password_sends_no_auth(redis_url: str) -> None:
    """`redis://:@host` is a Redis without a password, as redis-py reads it."""
    client = RedisConnection.from_url(redis_url.replace("://", "://:@", 1), socket_timeout_s=5.0)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
