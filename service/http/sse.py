"""Server-sent events: one event's bytes, and the streaming response that carries them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"


def sse_event(name: str, event_id: int, data: dict[str, Any]) -> bytes:
    """`event: name`, `id: event_id`, and `data` as one line of JSON (json.dumps writes no line breaks)."""
    return f"event: {name}\nid: {event_id}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """`text/event-stream`, never cached, and `on_close` called once the stream has ended for any reason
    (the last event sent, an error, or the client gone before the first byte was even written)."""

    def __init__(self, events: AsyncIterable[bytes], on_close: Callable[[], None]) -> None:
        # X-Accel-Buffering: a proxy such as nginx would otherwise hold the events back until it has a buffer full
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type=MEDIA_TYPE, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                self._on_close()
            except Exception:  # the response is over either way; what did not close is logged
                log.exception("closing an event stream failed")
