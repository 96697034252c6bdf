"""A transport that sends a response's head and body in one write.

uvicorn writes the status line and headers of a response, then its body, as two writes: two system calls,
and with TCP_NODELAY two segments, so a client on the other end may wake twice for one small answer. The
first write is held until the next one, which takes it along, or until the event loop's next turn (a
streamed response whose first event comes later still gets its head at once)."""

from __future__ import annotations

import asyncio
from typing import Any

JOIN_LIMIT = 64 * 1024  # larger writes go out as they are, behind what is held: no copy of a large body


class CoalescingTransport:
    """Wraps a stream transport; everything but writing and closing goes to it unchanged."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        if len(data) <= JOIN_LIMIT:
            self._transport.write(held + bytes(data))
        else:
            self._transport.writelines([held, data])

    def writelines(self, chunks: Any) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def flush(self) -> None:
        """Send what is held, if anything (and the connection is still open)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
