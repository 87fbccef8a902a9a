"""One multiplexed connection to Redis for the limiter's hot path.

redis-py spends most of a round trip in Python: a connection taken from and given back to a
pool, a retry wrapper, timeout scopes and instrumentation around every command, and one
connection per concurrent caller. The limiter sends only small request/reply commands
(EVALSHA, EVAL, ZREM, PING), so it talks to Redis the way ioredis does: every caller
shares one connection, a command is written the moment it is made, and replies, which Redis
sends in the order of the commands, are handed to the waiting callers in that order.
Concurrent callers are pipelined for free, and one caller pays one write and one read.

Failures keep the limiter's outage policy simple: a command that gets no reply within
`socket_timeout_s` fails with `TimeoutError`, and so does every command behind it, since the
connection is closed (a Redis that does not answer one does not answer the next); a lost
connection fails what it carried with `ConnectionError`. Nothing is retried: the next
command connects anew. A caller that is cancelled leaves its reply to be read and dropped,
so a later caller never receives an earlier caller's answer.

The errors are redis-py's (`ConnectionError`, `TimeoutError`, `ResponseError`,
`NoScriptError`, `AuthenticationError`), so code written against a redis-py client works
unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis
from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_SSL_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_SSL_OPTIONS = {
    "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
}


# How long an overdue command is given for a reply already read from the socket.
_GRACE_S = 0.001


class _ReplyError(Exception):
    """An error reply as hiredis builds it; turned into redis-py's class on delivery."""


def _pack(args: tuple[str | bytes | int, ...]) -> bytes:
    """The command in RESP, packed in C (hiredis's stub types it as a 1-tuple)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def _error(reply: _ReplyError) -> RedisError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
        return AuthenticationError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    """The replies of one connection, handed out in the order the commands were written."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(replyError=_ReplyError)
        # (reply future, deadline on the loop's clock), oldest first.
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        # One timer watches the oldest command only: a timer per command would cost more
        # than the command's own bookkeeping.
        self._watchdog: asyncio.TimerHandle | None = None
        # The oldest command when the watchdog last found it overdue (see _check_deadline).
        self._overdue: asyncio.Future[Any] | None = None
        self.failure: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, hence the cast.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write one packed command; the future gets its reply (or its error)."""
        if self.failure is not None or self._transport is None:
            raise RedisConnectionError(f"redis connection closed: {self.failure}")
        self._transport.write(command)
        reply: asyncio.Future[Any] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout_s
        self._waiting.append((reply, deadline))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        return reply

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if not waiting:
                    raise RedisConnectionError("redis sent a reply nobody asked for")
                future = waiting.popleft()[0]
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, _ReplyError):
                    future.set_exception(_error(reply))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, RedisConnectionError) as exc:
            self._fail(RedisConnectionError(f"redis protocol error: {exc}"))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        oldest, deadline = self._waiting[0]
        if deadline > self._loop.time():
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        elif oldest is not self._overdue:
            # Overdue, but its reply may be waiting in the socket: after a long callback
            # elsewhere, uvloop runs due timers before it reads. Look again after one more
            # turn of the loop, which reads first.
            self._overdue = oldest
            self._watchdog = self._loop.call_later(_GRACE_S, self._check_deadline)
        else:
            self._fail(RedisTimeoutError(f"no reply from redis within {self._timeout_s:g} s"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"redis connection lost: {exc or 'closed by the server'}"))

    def _fail(self, error: Exception) -> None:
        """Close the connection and fail every command still waiting on it."""
        if self.failure is None:
            self.failure = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.abort()
        while self._waiting:
            future = self._waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self._fail(RedisConnectionError("redis connection closed by the client"))


def _ssl_context(options: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    verify = options.get("ssl_cert_reqs", "required").lower()
    if verify not in _SSL_VERIFY:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_SSL_VERIFY)}, got {verify!r}")
    check_hostname = options.get("ssl_check_hostname", "true" if verify == "required" else "false")
    context.check_hostname = check_hostname.lower() in ("1", "true", "yes")
    context.verify_mode = _SSL_VERIFY[verify]
    if "ssl_certfile" in options:
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


class RedisConnection:
    """A Redis client of one multiplexed connection (see the module's docstring), with the
    few commands the limiter uses. Connects on first use and again after a failure."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        socket_timeout_s: float = 0.05,
        connect_timeout_s: float = 0.25,
    ) -> None:
        for name, value in (("socket", socket_timeout_s), ("connect", connect_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"the {name} timeout must be a positive number of seconds")
        self.host, self.port, self.path, self.db = host, port, path, db
        self._username, self._password = username, password
        self._ssl = ssl_context
        self._timeout_s = socket_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        # Callers arriving while a connection is being made wait for that one attempt.
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, *, socket_timeout_s: float = 0.05, connect_timeout_s: float = 0.25
    ) -> RedisConnection:
        """`redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS; query options
        `ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
        `ssl_check_hostname`) or `unix:///path?db=N`. Other query options are refused:
        timeouts are set by the limiter."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a redis://, rediss:// or unix:// URL: {parts.scheme}://")
        options = dict(parse_qsl(parts.query))
        allowed = {"db"} | (_SSL_OPTIONS if parts.scheme == "rediss" else set())
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"unsupported option(s) in the Redis URL: {', '.join(unknown)}")
        db_text = options.get("db", "0")
        if parts.scheme != "unix" and parts.path.strip("/"):
            db_text = parts.path.strip("/")
        try:
            db = int(db_text or 0)
        except ValueError:
            raise ValueError(f"the Redis database must be a number, got {db_text!r}") from None
        password = unquote(parts.password) if parts.password else None
        if parts.username and password is None:
            raise ValueError("a Redis user needs its password: redis://user:password@host")
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            path=unquote(parts.path) if parts.scheme == "unix" else None,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=password,
            ssl_context=_ssl_context(options) if parts.scheme == "rediss" else None,
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    def execute(self, *args: str | bytes | int) -> Awaitable[Any]:
        """Send one command; await its reply (hiredis types: bytes, int, list, None).

        Not a coroutine: once connected, the command is written now and the reply's future
        is returned, which saves a coroutine per command on the hot path."""
        command = _pack(args)
        protocol = self._protocol
        if protocol is None or protocol.failure is not None or self._closed:
            return self._send_when_connected(command)
        return protocol.send(command)

    async def _send_when_connected(self, command: bytes) -> Any:
        protocol = await self._connected()
        return await protocol.send(command)

    async def _connected(self) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("redis client is closed")
        attempt = self._connecting
        if attempt is None:
            attempt = self._connecting = asyncio.ensure_future(self._connect())
            attempt.add_done_callback(self._connect_done)
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            if attempt.cancelled() and self._closed:  # aclose() ended the attempt, not us
                raise RedisConnectionError("redis client is closed") from None
            raise

    def _connect_done(self, attempt: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if attempt.cancelled() or attempt.exception() is not None:
            return
        if self._closed:  # aclose() came between the connect and this callback
            attempt.result().close()
        else:
            self._protocol = attempt.result()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol: _Protocol | None = None
        hello: list[asyncio.Future[Any]] = []

        def factory() -> _Protocol:
            return _Protocol(loop, self._timeout_s)

        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self.path is not None:
                    _, protocol = await loop.create_unix_connection(factory, self.path)
                else:
                    _, protocol = await loop.create_connection(
                        factory, self.host, self.port, ssl=self._ssl
                    )
                # Sent back to back, before any command of a caller; their replies come first.
                if self._password is not None:
                    auth = ["AUTH", self._password]
                    if self._username:
                        auth.insert(1, self._username)
                    hello.append(protocol.send(_pack(tuple(auth))))
                if self.db:
                    hello.append(protocol.send(_pack(("SELECT", self.db))))
                await asyncio.gather(*hello)
        except BaseException as exc:
            if protocol is not None:
                protocol.close()
            for reply in hello:  # failed with the connection: nobody else will look
                if reply.done() and not reply.cancelled():
                    reply.exception()
            if isinstance(exc, TimeoutError):  # asyncio's (the builtin), not redis-py's
                raise RedisTimeoutError(
                    f"could not connect to redis within {self._connect_timeout_s:g} s"
                ) from exc
            if isinstance(exc, OSError):
                raise RedisConnectionError(f"could not connect to redis: {exc}") from exc
            raise
        return protocol

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: str | bytes | int) -> Awaitable[Any]:
        return self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, script: str, numkeys: int, *keys_and_args: str | bytes | int) -> Awaitable[Any]:
        return self.execute("EVAL", script, numkeys, *keys_and_args)

    async def script_load(self, script: str) -> str:
        sha = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def zrem(self, key: str, *members: str) -> int:
        return int(await self.execute("ZREM", key, *members))

    async def ping(self) -> bool:
        return bool(await self.execute("PING") == b"PONG")

    async def aclose(self) -> None:
        """Close the connection; commands still waiting fail with `ConnectionError`."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
