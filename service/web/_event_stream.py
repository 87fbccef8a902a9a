"""An operation's events as Server-Sent Events, encoded once for all of its streams."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sse_starlette import ServerSentEvent

from checkpoints import Event

#: Encoded events kept (a few operations' whole logs; each is a few hundred bytes).
MAX_ENCODED_EVENTS = 2048


class EncodedEvents:
    """The SSE bytes of events, by operation and sequence number: an event never changes
    once logged, and every stream that sends it sends the same bytes."""

    def __init__(self, max_events: int = MAX_ENCODED_EVENTS) -> None:
        self._max_events = max_events
        self._encoded: dict[tuple[str, int], bytes] = {}

    def of(self, operation_id: str, events: Sequence[Event]) -> bytes:
        """`events` of the operation, encoded one after the other (one write for all)."""
        if len(events) == 1:
            return self._one(operation_id, events[0])
        return b"".join(self._one(operation_id, event) for event in events)

    def _one(self, operation_id: str, event: Event) -> bytes:
        key = (operation_id, event.seq)
        encoded = self._encoded.get(key)
        if encoded is None:
            encoded = ServerSentEvent(
                data=json.dumps(dict(event.data), separators=(",", ":")),
                event=event.type,
                id=str(event.seq),
            ).encode()
            if len(self._encoded) >= self._max_events:
                del self._encoded[next(iter(self._encoded))]  # the oldest
            self._encoded[key] = encoded
        return encoded
