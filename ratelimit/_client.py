"""The limiter's Redis client: redis-py, set up for a hot path (see `connect`).

redis-py reads the URL; this module only refuses what the limiter cannot honour. Query
options other than the database and TLS ones are refused because redis-py lets an option in
the URL override the same argument given in code, and the timeouts and retries are the
limiter's to set: short socket and connect timeouts (50 ms and 250 ms by default) and no
retries, so an unreachable Redis costs one short wait at most, and the limiter's circuit
breaker takes it from there.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import RedisSSLContext
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

RedisClient = Redis | RedisCluster

DEFAULT_SOCKET_TIMEOUT_S = 0.05
# Connecting takes a TCP handshake and, under a burst of new connections on a busy event
# loop, more than one read's worth of time; a dead host still costs little with the breaker.
DEFAULT_CONNECT_TIMEOUT_S = 0.25
#: Most connections to Redis one instance opens. redis-py's default of 100 refuses the
#: 101st concurrent caller with "Too many connections", which a fail-closed route answers
#: with 503; concurrent callers mostly share one round trip (see `_redis`), so this many
#: are only opened in a burst. (redis-py's BlockingConnectionPool would queue callers
#: instead, but has had deadlocks under cancellation.)
MAX_CONNECTIONS = 1000

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_TLS_OPTIONS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)


def check_redis_url(url: str) -> None:
    """Raise `ValueError` unless `url` is one `connect` takes, or `OSError` when a TLS file
    it names cannot be read. Nothing is connected."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"not a Redis URL: {parts.scheme}://")
    tls = parts.scheme.startswith("rediss")
    options = dict(parse_qsl(parts.query))
    unknown = sorted(set(options) - {"db"} - (_TLS_OPTIONS if tls else set()))
    if unknown:
        raise ValueError(f"unsupported option(s) in the Redis URL: {', '.join(unknown)}")
    db = options.get("db", "" if parts.scheme == "unix" else parts.path.strip("/")) or "0"
    if not db.isdigit():
        # redis-py would quietly use database 0.
        raise ValueError(f"the Redis database must be a number, got {db!r}")
    if parts.username and not parts.password:
        # redis-py would send AUTH with an empty password.
        raise ValueError("a Redis user needs its password: redis://user:password@host")
    if tls:
        # Made now, as redis-py makes it on the first connection: a wrong value or a file
        # that cannot be read fails at start-up rather than on the first request.
        try:
            RedisSSLContext(
                keyfile=options.get("ssl_keyfile"),
                certfile=options.get("ssl_certfile"),
                cert_reqs=options.get("ssl_cert_reqs", "required"),
                ca_certs=options.get("ssl_ca_certs"),
            ).get()
        except RedisError as exc:
            raise ValueError(f"TLS option of the Redis URL: {exc}") from None


def connect(
    url: str,
    *,
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> RedisClient:
    """A redis-py client for the limiter (nothing is connected yet): short timeouts, no
    retries, no CLIENT SETINFO round trips on connecting. `url` is one of

        redis://[[user]:password@]host[:port][/db]
        rediss://…   TLS; query options ssl_cert_reqs, ssl_ca_certs, ssl_certfile,
                     ssl_keyfile, ssl_check_hostname
        unix:///path/to/redis.sock[?db=N]
        redis+cluster://host:port, rediss+cluster://…   a Redis Cluster (any node)

    giving a `Redis`, or a `RedisCluster` for the last two. Raises `ValueError` (or
    `OSError`, see `check_redis_url`) for a URL or timeout it cannot honour."""
    for name, value in (("socket", socket_timeout_s), ("connect", connect_timeout_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"the {name} timeout must be a positive number of seconds")
    check_redis_url(url)
    if "+cluster://" in url:
        return RedisCluster.from_url(
            url.replace("+cluster", "", 1),
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,
        )
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        driver_info=None,
        max_connections=MAX_CONNECTIONS,
    )
