"""Reading a request body with a byte limit enforced while it streams in (never buffered past it)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from elastic_anytime.service.http.errors import ApiError


async def read_limited(request: Request, limit: int, code: str = "body_too_large") -> bytes:
    """The body, refusing (413 `code`) as soon as it grows past `limit` rather than after buffering it all."""
    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ApiError(413, code, f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer: counted as a client gone, like one that leaves while it waits
        raise ApiError(
            499, "client_disconnected", "the client went away while sending the body", outcome="cancelled"
        ) from None
    return b"".join(chunks)
