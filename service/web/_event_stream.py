"""An operation's events as Server-Sent Events, encoded once for all of its streams."""

from __future__ import annotations

import json
from collections.abc import Sequence

from cachetools import FIFOCache
from sse_starlette import ServerSentEvent

from checkpoints import Event

#: Encoded events and runs of events kept (a few operations' logs; an event is a few
#: hundred bytes).
MAX_ENCODED_EVENTS = 2048


class EncodedEvents:
    """The SSE bytes of events, by operation and sequence number: an event never changes
    once logged, and every stream that sends it sends the same bytes."""

    def __init__(self, max_events: int = MAX_ENCODED_EVENTS) -> None:
        # (operation id, first seq, last seq) -> those events' bytes, one after the other
        self._encoded: FIFOCache[tuple[str, int, int], bytes] = FIFOCache(max_events)

    def of(self, operation_id: str, events: Sequence[Event]) -> bytes:
        """`events` of the operation (consecutive), encoded one after the other: one
        write for all. Streams that replay the same events share one bytes object (a
        stream keeps its last chunk while it waits for the next)."""
        key = (operation_id, events[0].seq, events[-1].seq)
        encoded = self._encoded.get(key)
        if encoded is None:
            if len(events) == 1:
                encoded = _encode(events[0])
            else:
                encoded = b"".join(self.of(operation_id, [event]) for event in events)
            self._encoded[key] = encoded
        return encoded


def _encode(event: Event) -> bytes:
    return ServerSentEvent(
        data=json.dumps(dict(event.data), separators=(",", ":")),
        event=event.type,
        id=str(event.seq),
    ).encode()
