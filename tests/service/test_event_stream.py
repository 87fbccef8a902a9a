"""Events encoded once: every stream of an operation sends the same bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sse_starlette import ServerSentEvent

from checkpoints import Event
from service.web._event_stream import EncodedEvents

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_events_are_encoded_as_sse_once_and_sent_together():
    """A batch is each event's SSE encoding, in order; a second stream replaying the same
    events gets the very same bytes, not a fresh encoding; the cache is bounded."""
    events = [Event(i, "step", {"operation_id": "op", "i": i, "text": "é"}, NOW)
              for i in (1, 2)]
    encoded = EncodedEvents(max_events=3)
    batch = encoded.of("op", events)
    assert batch == b"".join(
        ServerSentEvent(data=json.dumps(e.data, separators=(",", ":")), event=e.type,
                        id=str(e.seq)).encode()
        for e in events
    )
    assert encoded.of("op", events) is batch
    assert encoded.of("op", events[1:]) is encoded.of("op", events[1:])
    encoded.of("other", events[:1])  # a fourth entry: the oldest falls out
    assert encoded.of("op", events[:1]) == batch[: batch.index(b"id: 2")]
