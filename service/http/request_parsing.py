"""Request bodies read and parsed by hand (not by FastAPI parameters), so that the receive time is taken
first, the byte limit is enforced while reading, and every bad input gets a precise 4xx: multipart forms,
JSON with a base64 image, raw image bodies with the options in the query string; and how the schema
describes them (`openapi_body`, `openapi_raw`)."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import Request
from pydantic import ValidationError

from elastic_anytime.service.http.base64_image import decode_base64_image
from elastic_anytime.service.http.bodies import read_limited
from elastic_anytime.service.http.errors import ApiError, field_errors, summary
from elastic_anytime.service.http.multipart_form import FilePart, MultipartError, parse_form
from elastic_anytime.service.http.schemas import (
    ClassifyJSON,
    ClassifyOptions,
)
from elastic_anytime.service.http.state import ServiceState

_FORM_FIELDS = ("budget_ms", "budget_mflops", "min_confidence", "top_k")


# /v1/classify/raw: the body is the image itself, the options are query parameters
RAW_MEDIA_TYPES = frozenset(
    {"application/octet-stream", "image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff"}
)


def openapi_body() -> dict[str, Any]:
    options = ClassifyOptions.model_json_schema()["properties"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {"image": {"type": "string", "format": "binary"}, **options},
                    },
                    "encoding": {"image": {"contentType": "image/png, image/jpeg, image/webp, image/bmp"}},
                },
                "application/json": {"schema": ClassifyJSON.model_json_schema()},
            },
        }
    }


def openapi_raw() -> dict[str, Any]:
    # one media type in the schema (what a generic client or fuzzer knows how to send); the server also
    # takes image/png, image/jpeg, image/webp, image/bmp, image/gif and image/tiff, as the description says
    options = ClassifyOptions.model_json_schema()["properties"]
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in options.items()
        ],
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
    }


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_content_length(request: Request, limit: int, code: str = "body_too_large") -> None:
    raw = request.headers.get("content-length")
    if raw is None:
        return
    try:
        length = int(raw)
    except ValueError:
        raise ApiError(400, "bad_content_length", f"Content-Length {raw!r} is not a number") from None
    if length > limit:
        raise ApiError(413, code, f"the body is {length} bytes; the limit is {limit}")


async def _read_body(request: Request, limit: int) -> bytes:
    body = await read_limited(request, limit)
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty; send an image (multipart or JSON)")
    return body


def _validation_error(err: ValidationError) -> ApiError:
    errors = field_errors(err.errors())
    return ApiError(422, "invalid_field", summary(errors), errors=errors)


def b64_image(text: str, max_bytes: int) -> bytes:
    """Standard padded base64, optionally as a data: URL: exactly what service.http.openapi.BASE64_PATTERN says."""
    return decode_base64_image(text, max_bytes)


def _parse_json(body: bytes, context: dict[str, Any], max_bytes: int) -> tuple[bytes, ClassifyOptions]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_body", f"the JSON body must be an object, not {type(payload).__name__}")
    try:
        parsed = ClassifyJSON.model_validate(payload, strict=True, context=context)
    except ValidationError as err:
        raise _validation_error(err) from None
    options = ClassifyOptions.model_validate(parsed.model_dump(exclude={"image"}), context=context)
    return b64_image(parsed.image, max_bytes), options


def query_options(request: Request, context: dict[str, Any]) -> ClassifyOptions:
    """The options of a raw request, from its query string, validated as strictly as form fields."""
    fields: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in fields:
            error = {"field": key, "message": "given more than once", "type": "duplicate"}
            raise ApiError(422, "invalid_field", f"{key}: given more than once", errors=[error])
        fields[key] = value.strip()
    try:
        return ClassifyOptions.model_validate(fields, context=context)
    except ValidationError as err:
        raise _validation_error(err) from None


async def _parse_multipart(
    request: Request, body: bytes, context: dict[str, Any], max_bytes: int
) -> tuple[bytes, ClassifyOptions]:
    content_type = request.headers.get("content-type", "")
    try:
        form = parse_form(content_type, body, max_files=1, max_fields=len(_FORM_FIELDS) + 4)
    except MultipartError as err:
        raise ApiError(400, "malformed_multipart", f"the multipart body cannot be parsed: {err}") from None
    image: bytes | None = None
    fields: dict[str, Any] = {}
    for key, value in form:
        if key == "image":
            if not isinstance(value, FilePart):
                error = {"field": "image", "message": "must be a file", "type": "file_type"}
                raise ApiError(422, "invalid_field", "image: must be a file upload, not a text field", errors=[error])
            image = value.data
            continue
        if isinstance(value, FilePart):
            raise ApiError(422, "invalid_field", f"{key}: must be a text field, not a file")
        if key in fields:  # found by fuzzing: the last of several values used to win silently
            error = {"field": key, "message": "given more than once", "type": "duplicate"}
            raise ApiError(422, "invalid_field", f"{key}: given more than once", errors=[error])
        fields[key] = value.strip()  # an empty value is invalid (422), not "absent": the schema says number
    if image is None:
        raise ApiError(422, "invalid_field", "image: a file field named 'image' is required",
                       errors=[{"field": "image", "message": "field required", "type": "missing"}])  # fmt: skip
    try:
        options = ClassifyOptions.model_validate(fields, context=context)
    except ValidationError as err:
        raise _validation_error(err) from None
    if len(image) > max_bytes:
        raise ApiError(413, "image_too_large", f"the image is {len(image)} bytes; the limit is {max_bytes}")
    return image, options


async def read_form_or_json(request: Request, settings: Any) -> bytes:
    """/v1/classify: the body of a multipart form or a JSON request, read from the network."""
    media_type = _media_type(request)
    if media_type not in ("multipart/form-data", "application/json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media_type or '(none)'!r} is not accepted; send multipart/form-data with an "
            "'image' file, or application/json with 'image' as base64 (raw image bytes: /v1/classify/raw)",
        )
    _check_content_length(request, settings.max_body_bytes)
    return await _read_body(request, settings.max_body_bytes)


async def parse_form_or_json(
    request: Request, body: bytes, service: ServiceState, context: dict[str, Any]
) -> tuple[bytes, ClassifyOptions]:
    """/v1/classify: the image and the options from the body of a multipart form or a JSON request."""
    settings = service.settings
    if _media_type(request) == "application/json":  # json + base64 of megabytes: keep it off the event loop
        async with service.off_the_loop():
            return await anyio.to_thread.run_sync(_parse_json, body, context, settings.max_image_bytes)
    return await _parse_multipart(request, body, context, settings.max_image_bytes)


def check_raw_media_type(request: Request) -> None:
    media_type = _media_type(request)
    if media_type not in RAW_MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media_type or '(none)'!r} is not accepted here; send the image file with one of "
            f"{', '.join(sorted(RAW_MEDIA_TYPES))} (multipart or JSON: /v1/classify)",
        )


async def read_raw_image(request: Request, max_bytes: int) -> bytes:
    """/v1/classify/raw: the body is the image, limited to max_image_bytes."""
    _check_content_length(request, max_bytes, code="image_too_large")
    data = await read_limited(request, max_bytes, code="image_too_large")
    if not data:
        raise ApiError(400, "empty_image", "the request body is empty; send the image file as the body")
    return data
