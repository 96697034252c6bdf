"""HTTP routes. Request bodies are read and parsed by hand (not by FastAPI parameters) so that the
receive time is taken first, the byte limit is enforced while reading, and every bad input gets a
precise 4xx. Small images are decoded on the event loop (a fraction of a millisecond, less than the two
thread hand-offs a worker costs on a busy machine), larger ones in worker threads; the model runs in
the engine's thread."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from elastic_anytime.service.engine.admission import idle_floor_s
from elastic_anytime.service.engine.types import Arrival, ClientGoneError
from elastic_anytime.service.http.arrival import arrival_of
from elastic_anytime.service.http.base64_image import decode_base64_image
from elastic_anytime.service.http.bodies import read_limited
from elastic_anytime.service.http.classify_answer import classify_response
from elastic_anytime.service.http.errors import ApiError, field_errors, summary
from elastic_anytime.service.http.intake import (
    JOB_FAILURES,
    Intake,
    classify_request,
    job_failure,
    refuse_unless_serving,
    validation_context,
)
from elastic_anytime.service.http.schemas import (
    ClassifyJSON,
    ClassifyOptions,
    ClassifyResponse,
    ErrorResponse,
    ExitInfo,
    LatencyStats,
    ModelInfo,
)
from elastic_anytime.service.http.state import ServiceState

router = APIRouter()

_FORM_FIELDS = ("budget_ms", "budget_mflops", "min_confidence", "top_k")
# /v1/classify/raw: the body is the image itself, the options are query parameters
RAW_MEDIA_TYPES = frozenset(
    {"application/octet-stream", "image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff"}
)


async def get_service(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, two thread hand-offs per request
    return request.app.state.service


Service = Annotated[ServiceState, Depends(get_service)]


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


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


def _openapi_raw() -> dict[str, Any]:
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


# -- body reading and parsing ------------------------------------------------------------------------


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


def _b64_image(text: str, max_bytes: int) -> bytes:
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
    return _b64_image(parsed.image, max_bytes), options


def _query_options(request: Request, context: dict[str, Any]) -> ClassifyOptions:
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


async def _body_stream(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def _parse_multipart(
    request: Request, body: bytes, context: dict[str, Any], max_bytes: int
) -> tuple[bytes, ClassifyOptions]:
    parser = MultiPartParser(request.headers, _body_stream(body), max_files=1, max_fields=len(_FORM_FIELDS) + 4)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, "malformed_multipart", f"the multipart body cannot be parsed: {err.message}") from None
    try:
        image = form.get("image")
        if image is None:
            raise ApiError(422, "invalid_field", "image: a file field named 'image' is required",
                           errors=[{"field": "image", "message": "field required", "type": "missing"}])  # fmt: skip
        if not isinstance(image, UploadFile):
            raise ApiError(422, "invalid_field", "image: must be a file upload, not a text field",
                           errors=[{"field": "image", "message": "must be a file", "type": "file_type"}])  # fmt: skip
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == "image":
                continue
            if isinstance(value, UploadFile):
                raise ApiError(422, "invalid_field", f"{key}: must be a text field, not a file")
            if key in fields:  # found by fuzzing: the last of several values used to win silently
                error = {"field": key, "message": "given more than once", "type": "duplicate"}
                raise ApiError(422, "invalid_field", f"{key}: given more than once", errors=[error])
            fields[key] = value.strip()  # an empty value is invalid (422), not "absent": the schema says number
        try:
            options = ClassifyOptions.model_validate(fields, context=context)
        except ValidationError as err:
            raise _validation_error(err) from None
        data = await image.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise ApiError(413, "image_too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    return data, options


# -- routes ------------------------------------------------------------------------------------------


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Classify an image within a latency and/or compute budget",
    description=(
        "Send the image as multipart (`image` file + optional form fields) or as JSON (`image` base64). "
        "The server runs the network stage by stage and answers from the deepest exit that fits "
        "`budget_ms` (from when it received the request), `budget_mflops` and `min_confidence`."
    ),
    responses=_error_responses(400, 413, 415, 422, 503),
    openapi_extra=openapi_body(),
)
async def classify(request: Request) -> ClassifyResponse:
    return await _serve(request, raw=False)


@router.post(
    "/v1/classify/raw",
    response_model=ClassifyResponse,
    summary="Classify an image sent as the raw request body, options in the query string",
    description=(
        "The body is the image file itself (`Content-Type: application/octet-stream`, or `image/png`, "
        "`image/jpeg`, `image/webp`, `image/bmp`, `image/gif`, `image/tiff`); `budget_ms`, `budget_mflops`, "
        "`min_confidence` and `top_k` are query parameters. The same answer as `/v1/classify`, without the "
        "multipart framing; a budget that cannot be met is refused before the body is read."
    ),
    responses=_error_responses(400, 413, 415, 422, 503),
    openapi_extra=_openapi_raw(),
)
async def classify_raw(request: Request) -> ClassifyResponse:
    return await _serve(request, raw=True)


async def _serve(request: Request, raw: bool) -> ClassifyResponse:
    service: ServiceState = request.app.state.service  # not `Service`: no dependency to solve on the hot path
    with classify_request(request, service) as received:
        return await _classify(request, service, received.at, received.arrival, raw, received.lag_s)


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


def _check_raw_media_type(request: Request) -> None:
    media_type = _media_type(request)
    if media_type not in RAW_MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media_type or '(none)'!r} is not accepted here; send the image file with one of "
            f"{', '.join(sorted(RAW_MEDIA_TYPES))} (multipart or JSON: /v1/classify)",
        )


async def _read_raw_image(request: Request, max_bytes: int) -> bytes:
    """/v1/classify/raw: the body is the image, limited to max_image_bytes."""
    _check_content_length(request, max_bytes, code="image_too_large")
    data = await read_limited(request, max_bytes, code="image_too_large")
    if not data:
        raise ApiError(400, "empty_image", "the request body is empty; send the image file as the body")
    return data


async def _classify(
    request: Request, service: ServiceState, received: float, arrival: Arrival, raw: bool, lag_s: float
) -> ClassifyResponse:
    settings, engine = service.settings, service.engine
    retry = refuse_unless_serving(service)  # before reading the body: under overload a refusal costs next to nothing
    context = validation_context(service)
    intake = Intake(service, request, received, retry, lag_s)
    if raw:  # the options come first, so a budget that cannot be met is refused before the body is read
        _check_raw_media_type(request)
        options = _query_options(request, context)
        budget_ms, budget = intake.admit(options)
        data = await _read_raw_image(request, settings.max_image_bytes)
        async with service.reading():
            job = await intake.submit(data, budget, options, arrival)
    else:
        body = await read_form_or_json(request, settings)
        async with service.reading():  # one request's parsing and decoding at a time: see ServiceState.reading
            data, options = await parse_form_or_json(request, body, service, context)
            budget_ms, budget = intake.admit(options)
            job = await intake.submit(data, budget, options, arrival)
    if job is None:  # the client left while it was read: no work for nobody
        service.metrics.client_gone()
        return Response(status_code=499)
    forget = arrival_of(request.scope).on_disconnect(lambda: engine.cancel(job))
    service.submitted += 1
    try:
        answer = await job.future
    except ClientGoneError:  # nobody to answer: its work stopped (engine.cancel)
        service.metrics.client_gone()
        return Response(status_code=499)
    except JOB_FAILURES as err:
        raise job_failure(err, budget_ms, retry) from None
    finally:
        forget()
        service.submitted -= 1

    return classify_response(intake, answer, budget, budget_ms, options.budget_mflops)


@router.get("/v1/model", response_model=ModelInfo, summary="Exits, cost, accuracy and the live latency profile")
async def model_info(service: Service) -> ModelInfo:
    runner, settings, profile = service.runner, service.settings, service.profile
    placement = service.engine.placement  # the process engine's CPUs, if pinned
    snapshot, cold_snapshot = profile.snapshot(), profile.snapshot(cold=True)
    front = service.engine.front()
    exits = []
    for k, meta in enumerate(runner.meta["exits"]):
        exits.append(
            ExitInfo(
                index=k,
                name=str(meta["name"]),
                mflops=float(meta["mflops"]),
                anytime_mflops=runner.exit_mflops[k],
                params=int(meta["params"]),
                accuracy=meta.get("accuracy"),
                temperature=runner.temperatures[k],
                latency={b: LatencyStats(**s) for b, s in snapshot[k].items()},
                cold_latency={b: LatencyStats(**s) for b, s in cold_snapshot[k].items()},
                cumulative_p95_ms_batch1=round(profile.predict_path(k, 1, "p95") * 1e3, 4),
            )
        )
    return ModelInfo(
        name=service.model_name,
        checkpoint=str(service.checkpoint_path),
        dataset=runner.meta.get("dataset"),
        device=service.device,
        input_size=list(runner.input_size),
        classes=list(runner.classes),
        num_exits=runner.num_exits,
        ready=service.engine.accepting,
        exits=exits,
        serving={
            "max_batch_size": settings.max_batch_size,
            "max_batch_wait_ms": settings.max_batch_wait_ms,
            "queue_limit": settings.queue_limit,
            "default_budget_ms": settings.default_budget_ms,
            "max_budget_ms": settings.max_budget_ms,
            "response_margin_ms": settings.response_margin_ms,
            "handoff_ms": round(service.engine.handoff_s * 1e3, 4),
            # what the front end costs around the engine, and the smallest budget an idle server meets
            "front_end_ms": {name: round(value * 1e3, 4) for name, value in dataclasses.asdict(front).items()},
            "idle_floor_ms": round(idle_floor_s(profile, front) * 1e3, 4),
            "cpu_placement": None if placement is None else placement.describe(),
            "profile_quantile": settings.profile_quantile,
            "reject_unmeetable": settings.reject_unmeetable,
            "guardrail_share": settings.guardrail_share,  # README "Guardrail"
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
        },
    )


@router.get("/healthz", summary="Liveness: the process and its engine are alive", responses=_error_responses(503))
@router.get("/v2/health/live", summary="Liveness (KServe v2 alias)", responses=_error_responses(503))
async def healthz(request: Request) -> Response:
    # not alive: an engine that will not come back by itself, so that the orchestrator restarts the server
    # instead of keeping it unready. The thread engine: its inference thread raised. The process engine
    # replaces an inference process that exits and stays alive meanwhile; it is not alive once it failed
    # for good or 3 restarts failed within 60 s (service.worker.restart_policy), and says which (health_detail).
    service = getattr(request.app.state, "service", None)
    detail = None
    if service is not None:
        detail = service.engine.health_detail
    if detail is not None:
        return JSONResponse({"error": "engine_failed", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: model loaded, warmed up and calibrated", responses=_error_responses(503))
@router.get("/v2/health/ready", summary="Readiness (KServe v2 alias)", responses=_error_responses(503))
async def readyz(service: Service) -> Response:
    engine = service.engine
    if engine.accepting and not service.shutting_down:
        return JSONResponse({"status": "ready"})
    restarting = engine.ready_detail  # the process engine, while it replaces its child
    if engine.error is not None:
        detail = f"the engine failed: {engine.error}"
    elif service.shutting_down:
        detail = "shutting down"
    elif restarting is not None:
        detail = restarting
    else:
        detail = "warming up and calibrating the latency profile"
    return JSONResponse({"error": "not_ready", "detail": detail}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: Service) -> Response:
    content, media_type = service.metrics.render()
    return Response(content, media_type=media_type)
