"""Every error leaves the server as JSON `{"error": code, "detail": message, "errors": [...]}`.

Handlers for our own `ApiError`, for FastAPI/pydantic validation errors (422 with one entry per
field, inputs left out: they may hold NaN or megabytes of base64) and for Starlette's HTTP errors
(404, 405). The catch-all keeps even a bug from answering with an HTML page or a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than a classification. `outcome` is the metrics outcome it counts as."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        outcome: str = "error",
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors, self.headers, self.outcome = errors, headers, outcome


def error_response(
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


MAX_FIELD_ERRORS = 10  # a body with 100 000 unknown keys must not get a 12 MB answer (found by fuzzing)


def field_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic error dicts → JSON-safe {field, message, type}; the offending input is not echoed.

    At most MAX_FIELD_ERRORS entries; a last entry {"field": "...", "type": "truncated"} counts the rest.
    """
    out = []
    for e in raw[:MAX_FIELD_ERRORS]:
        loc = [str(part)[:64] for part in e.get("loc", ()) if part not in ("body", "query", "path")]
        out.append({"field": ".".join(loc) or "body", "message": str(e.get("msg", "invalid")), "type": e.get("type")})
    if len(raw) > MAX_FIELD_ERRORS:
        more = len(raw) - MAX_FIELD_ERRORS
        out.append({"field": "...", "message": f"{more} more errors not shown", "type": "truncated"})
    return out


def summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"


async def _api_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, ApiError)
    return error_response(err.status, err.code, err.detail, err.errors, err.headers)


async def _validation_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    errors = field_errors(err.errors())
    return error_response(422, "invalid_field", summary(errors), errors)


async def _http_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
    return error_response(err.status_code, code, str(err.detail), headers=getattr(err, "headers", None))


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "the server failed on this request; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
