"""Writes and steps that outlast a cancelled caller or a database that is briefly gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from ._errors import is_connection_failure

log = logging.getLogger("checkpoints")

T = TypeVar("T")


class Landed:
    """What `through_outage` answers when an earlier attempt took effect after all."""


LANDED: Final = Landed()


async def durable(write: Awaitable[T]) -> T:
    """Let a write finish even if the caller is cancelled meanwhile: a commit cut off in
    the middle can break a pooled connection, and the step must not be left in doubt."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


async def through_outage(
    attempt: Callable[[], Awaitable[T]], *, patience: float, what: str,
    landed: Callable[[], Awaitable[bool]] | None = None,
) -> T | Landed:
    """Call `attempt` again after each failure to reach the database (backing off up to
    2 s), for up to `patience` seconds; any other error, or one past that, is raised.

    With `landed`, before each new attempt: whether the failed one took effect after all
    (a commit can go through just before its connection drops); `LANDED` then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.1
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_connection_failure(exc) or loop.time() >= deadline:
                raise
            log.warning("%s waits for the database (%s)", what, type(exc).__name__)
        while True:
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)
            if landed is None:
                break
            try:
                if await landed():
                    return LANDED
                break
            except Exception as exc:
                if not is_connection_failure(exc) or loop.time() >= deadline:
                    raise
