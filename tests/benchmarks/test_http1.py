"""The load generator's HTTP/1.1 client against a small real socket server: Content-Length, chunked
and close-delimited bodies, keep-alive reuse, and a broken connection reported as HttpError."""

from __future__ import annotations

import asyncio

import pytest

from elastic_anytime.benchmarks.http1 import Http1Pool, HttpError, build_request

RESPONSES = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy",
    b"/broken": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
}


async def serve_and_post(paths: list[str]) -> tuple[list, int]:
    """Start a server on loopback, post to each path in turn on one pool; (results, connections opened)."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
                )
                await reader.readexactly(length)
                path = head.split(b" ")[1]
                writer.write(RESPONSES[path])
                await writer.drain()
                if path in (b"/close", b"/broken"):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/")
    results = []
    async with server:
        for path in paths:
            request = build_request(f"http://127.0.0.1:{port}{path}", b"body-bytes", "application/octet-stream")
            try:
                results.append(await pool.post(request, timeout_s=5))
            except HttpError as err:
                results.append(err)
        pool.close()
    return results, connections


def test_bodies_by_length_chunked_and_close_and_keep_alive_reuse() -> None:
    results, connections = asyncio.run(serve_and_post(["/length", "/chunked", "/length", "/close", "/length"]))
    assert [(r.status_code, r.content) for r in results] == [
        (200, b"hello"),
        (201, b"abcde"),
        (200, b"hello"),
        (503, b"busy"),
        (200, b"hello"),
    ]
    assert connections == 2  # one kept alive for the first four, a new one after "Connection: close"


def test_a_truncated_response_is_an_http_error() -> None:
    (result,), _ = asyncio.run(serve_and_post(["/broken"]))
    assert isinstance(result, HttpError) and "IncompleteReadError" in str(result)


def test_a_timeout_is_raised_and_the_connection_dropped() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}/")
        async with server:
            with pytest.raises(TimeoutError):
                await pool.post(build_request(f"http://127.0.0.1:{port}/", b"x", "text/plain"), timeout_s=0.2)
            assert pool._idle == []
            server.close()

    asyncio.run(main())
