"""service.http.coalescing: a response's head and body leave in one write; a lone write leaves at the loop's
next turn; closing sends what is held first; a large body is not copied."""

from __future__ import annotations

import asyncio
from typing import Any

from elastic_anytime.service.http.coalescing import JOIN_LIMIT, CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.batches: list[list[Any]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: list[Any]) -> None:
        self.batches.append(list(chunks))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _run(body: Any) -> RecordingTransport:
    inner = RecordingTransport()

    async def main() -> None:
        await body(CoalescingTransport(inner, asyncio.get_running_loop()))  # type: ignore[arg-type]

    asyncio.run(main())
    return inner


def test_a_head_and_a_body_leave_in_one_write() -> None:
    async def respond(transport: CoalescingTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        await asyncio.sleep(0)

    assert _run(respond).writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_a_lone_write_leaves_at_the_next_turn_of_the_loop() -> None:
    seen: list[list[bytes]] = []

    async def head_only(transport: CoalescingTransport) -> None:
        inner = transport._transport
        transport.write(b"head")  # a streamed response: its first event comes later
        seen.append(list(inner.writes))  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        seen.append(list(inner.writes))  # type: ignore[attr-defined]

    _run(head_only)
    assert seen == [[], [b"head"]]


def test_closing_sends_what_is_held_first_and_other_calls_pass_through() -> None:
    async def close(transport: CoalescingTransport) -> None:
        transport.write(b"last words")
        assert transport.get_extra_info("peername") == "info:peername"
        transport.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing more to send

    inner = _run(close)
    assert inner.writes == [b"last words"] and inner.closed


def test_a_large_body_follows_the_head_without_a_copy() -> None:
    body = memoryview(bytes(JOIN_LIMIT + 1))

    async def respond(transport: CoalescingTransport) -> None:
        transport.write(b"head")
        transport.write(body)

    inner = _run(respond)
    assert inner.writes == [] and len(inner.batches) == 1
    head, sent = inner.batches[0]
    assert head == b"head" and sent is body
