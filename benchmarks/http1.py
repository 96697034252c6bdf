"""A minimal HTTP/1.1 keep-alive client for the load generator: pre-serialised requests written to a
pooled connection, responses read by Content-Length (or chunked).

Why not httpx here: on this 2-core machine the load generator shares the CPU with the server under
test, and httpx costs about a millisecond of Python per request (request model, header objects,
anyio streams), enough to inflate every latency it measures and to fall short of the open-loop rates
it is asked to offer. This client only does what a benchmark needs: POST the same few bodies over
loopback, read the status and the JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The connection broke or the response was not HTTP/1.1 as expected."""


@dataclass
class Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def build_request(url: str, body: bytes, content_type: str) -> bytes:
    """The full bytes of a POST with `body`, ready to write as they are."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Connection:
    """One HTTP/1.1 connection. `send` and `receive` are apart so that a burst can write many requests on
    many connections in one go (no await between the writes) before it reads any answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[Response, bool]:
        """Send one request, read its response; (response, whether the connection can be reused)."""
        self.send(request)
        return await self.receive()

    def send(self, request: bytes) -> None:
        """Hand `request` to the socket now (the transport writes at once what the socket takes)."""
        self.writer.write(request)

    async def receive(self) -> tuple[Response, bool]:
        """The response to the request sent last; (response, whether the connection can be reused)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            raise HttpError("response headers too large")
        lines = head.decode("latin-1").split("\r\n")
        try:
            version, status, *_ = lines[0].split(" ", 2)
            code = int(status)
        except ValueError:
            raise HttpError(f"bad status line {lines[0]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunked()
        else:  # no length: the body ends with the connection
            content = await self.reader.read()
            return Response(code, content), False
        reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return Response(code, content), reusable

    async def _chunked(self) -> bytes:
        chunks = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected: the final empty line
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def connect(host: str, port: int, timeout_s: float) -> Connection:
    """A new connection (raises HttpError, or TimeoutError after `timeout_s`)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        raise
    except OSError as err:
        raise HttpError(f"{type(err).__name__}: {err}") from None
    return Connection(reader, writer)


class Http1Pool:
    """Keep-alive connections to one host and port, opened on demand, at most `max_connections`."""

    def __init__(self, url: str, max_connections: int = 256) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, request: bytes, timeout_s: float) -> Response:
        """`request` from `build_request`; raises HttpError, or TimeoutError after `timeout_s`."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            try:
                if connection is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout_s)
                    connection = Connection(reader, writer)
                response, reusable = await asyncio.wait_for(connection.exchange(request), timeout_s)
            except BaseException as err:  # the connection may be mid-response: drop it
                if connection is not None:
                    connection.close()
                # TimeoutError is an OSError: it stays itself; other socket and parse failures are HttpError
                if isinstance(err, TimeoutError) or not isinstance(
                    err, (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
                ):
                    raise
                raise HttpError(f"{type(err).__name__}: {err}") from None
            if reusable:
                self._idle.append(connection)
            else:
                connection.close()
            return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
