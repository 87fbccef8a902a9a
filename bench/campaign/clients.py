"""The crowd: careful clients that create, follow, cut and follow again, and what they
saw."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from tests.service.conftest import token
from tests.service.sse import events

if TYPE_CHECKING:
    from bench.load import Campaign

PROVIDER_CODES = {"PROVIDER_RATE_LIMITED", "PROVIDER_UNAVAILABLE", "PROVIDER_BILLING_EXHAUSTED",
                  "PROVIDER_TIMEOUT", "PROVIDER_BAD_OUTPUT", "PROVIDER_ERROR"}


class CampaignTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, except that a connection closed while it was being opened (an
    instance killed at that moment) is a `ConnectError` like any other refused one:
    anyio's socket stream on uvloop raises AttributeError there (it asks a transport
    that is already closed for its peer's address)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except AttributeError as exc:
            raise httpx.ConnectError(f"connection closed as it opened ({exc})",
                                     request=request) from exc


def campaign_client() -> httpx.AsyncClient:
    """The HTTP client of every virtual user: no pool limits, long reads (streams)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(timeout=httpx.Timeout(60, read=90),
                             transport=CampaignTransport(limits=limits))


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
