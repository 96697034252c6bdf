"""HTTP routes. Request bodies are read and parsed by hand (not by FastAPI parameters) so that the
receive time is taken first, the byte limit is enforced while reading, and every bad input gets a
precise 4xx. Small images are decoded on the event loop (a fraction of a millisecond, less than the two
thread hand-offs a worker costs on a busy machine), larger ones in worker threads; the model runs in
the engine's thread."""

from __future__ import annotations

import asyncio
import base64
import binascii
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

from service.admission import idle_floor_s, way_out_s
from service.arrival import arrival_of
from service.bodies import read_limited
from service.engine import (
    Answer,
    Arrival,
    BacklogError,
    ClientGoneError,
    DeadlineUnmeetableError,
    InferenceError,
    Job,
    QueueFullError,
    UnavailableError,
)
from service.errors import ApiError, field_errors, summary
from service.imaging import ImageError
from service.policy import Budget
from service.schemas import (
    ClassifyJSON,
    ClassifyOptions,
    ClassifyResponse,
    ErrorResponse,
    ExitInfo,
    LatencyStats,
    ModelInfo,
    TopK,
)
from service.state import ServiceState

router = APIRouter()

_FORM_FIELDS = ("budget_ms", "budget_mflops", "min_confidence", "top_k")
# /v1/classify/raw: the body is the image itself, the options are query parameters
RAW_MEDIA_TYPES = frozenset(
    {"application/octet-stream", "image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff"}
)
INLINE_DECODE_PIXELS = 128 * 128  # images up to this size are decoded on the event loop
# an answer needs two turns of the event loop (its pipe read, then its handler), each as long as the one
# that a request waits for its handler to run
LOOP_TURNS = 2
_ASCII_WHITESPACE = str.maketrans("", "", " \t\r\n")


async def get_service(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, two thread hand-offs per request
    return request.app.state.service


Service = Annotated[ServiceState, Depends(get_service)]


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def _openapi_body() -> dict[str, Any]:
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
    """Standard padded base64, optionally as a data: URL: exactly what service.openapi.BASE64_PATTERN says."""
    bad = ApiError(400, "bad_base64", "the 'image' field is not valid base64")
    if text.startswith("data:"):
        _, comma, text = text.partition(",")
        if not comma:
            raise bad
    text = text.translate(_ASCII_WHITESPACE)  # line-wrapped base64; nothing else (as the schema's pattern says)
    if len(text) * 3 // 4 > max_bytes + 2:
        raise ApiError(413, "image_too_large", f"the image exceeds the limit of {max_bytes} bytes")
    # b64decode also takes "QUJD==" and "QUJD====" (padding past a full group): not base64 by the schema
    if len(text) % 4 or len(text) - len(text.rstrip("=")) > 2:
        raise bad
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad from None


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
    openapi_extra=_openapi_body(),
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
    received = arrival_of(request.scope, service.engine.clock).first_byte  # the budget is the client's
    lag_s = service.engine.clock() - received
    # announced to the engine while read and decoded, so a forming batch waits for it (max-wait at most)
    with service.track_request(), service.metrics.tracking(), service.engine.arriving() as arrival:
        try:
            return await _classify(request, service, received, arrival, raw, lag_s)
        except ApiError as err:
            service.metrics.outcome(err.outcome)
            if err.outcome == "rejected":
                service.metrics.refused(err.code)
            raise


def _budget(options: ClassifyOptions, settings: Any, received: float) -> tuple[float | None, Budget]:
    budget_ms = options.budget_ms if options.budget_ms is not None else settings.default_budget_ms
    budget = Budget(
        deadline=None if budget_ms is None else received + budget_ms / 1e3,
        max_mflops=options.budget_mflops,
        min_confidence=options.min_confidence,
    )
    return budget_ms, budget


async def _read_form_or_json(request: Request, settings: Any) -> bytes:
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


async def _parse_form_or_json(
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
    settings, engine, runner = service.settings, service.engine, service.runner
    retry = {"Retry-After": str(settings.retry_after_s)}
    if service.shutting_down or not engine.accepting:
        # the process engine says why while it restarts its inference process; the thread engine has no child
        restarting = None if service.shutting_down else getattr(engine, "unavailable_detail", None)
        if restarting is not None:
            detail = restarting
        elif service.shutting_down:
            detail = "the server is shutting down"
        elif engine.error is not None:
            detail = f"the engine failed: {engine.error}"
        else:
            detail = "the server is not ready (warming up)"
        raise ApiError(503, "unavailable", detail, headers=retry, outcome="rejected")
    # shed before reading and decoding the body: under overload a refusal must cost next to nothing
    if service.in_flight > settings.max_in_flight:
        detail = f"the server is at capacity: {service.in_flight - 1} requests are being handled"
        raise ApiError(503, "overloaded", detail, headers=retry, outcome="rejected")
    if engine.queue_depth >= settings.queue_limit:
        detail = f"the server is at capacity: {engine.queue_depth} requests are already waiting"
        raise ApiError(503, "queue_full", detail, headers=retry, outcome="rejected")

    context = {
        "max_budget_ms": settings.max_budget_ms,
        "max_budget_mflops": settings.max_budget_mflops,
        "num_classes": len(runner.classes),
    }
    intake = _Intake(service, request, received, retry, lag_s)
    if raw:  # the options come first, so a budget that cannot be met is refused before the body is read
        _check_raw_media_type(request)
        options = _query_options(request, context)
        budget_ms, budget = intake.admit(options)
        data = await _read_raw_image(request, settings.max_image_bytes)
        async with service.reading():
            job = await intake.submit(data, budget, options, arrival)
    else:
        body = await _read_form_or_json(request, settings)
        async with service.reading():  # one request's parsing and decoding at a time: see ServiceState.reading
            data, options = await _parse_form_or_json(request, body, service, context)
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
    except (QueueFullError, UnavailableError, DeadlineUnmeetableError) as err:
        raise _engine_refusal(err, budget_ms, retry) from None
    except InferenceError as err:
        raise ApiError(500, "inference_failed", str(err)) from None
    finally:
        forget()
        service.submitted -= 1

    runner = answer.runner or runner  # the model that answered, even if a reload swapped it meanwhile
    classes = runner.classes
    top_k = answer.top_k and [TopK(label=classes[c], class_id=c, confidence=p) for c, p in answer.top_k]
    # the answer as the client gets it: latency from the request's first byte to its response, made now
    engine_latency_s = answer.latency_s
    answer = _as_sent(answer, budget, received, engine.clock())
    # the engine keeps room before deadlines for how long answers take from its exit to here
    # the way out, and for a lone request the way in too (a pipe and a wake-up with the process engine)
    handed_in = max(0.0, answer.enqueued_at - intake.submitted)
    lone = intake.lone and service.alone()
    engine.front_costs.observe_out(answer.latency_s - engine_latency_s, lone=lone, handed_in_s=handed_in)
    service.metrics.safely(lambda: service.metrics.answered(answer, budget))
    return ClassifyResponse(
        label=classes[answer.class_id],
        class_id=answer.class_id,
        confidence=answer.confidence,
        exit=answer.exit_index,
        exit_name=runner.model.exit_names[answer.exit_index],
        num_exits=runner.num_exits,
        mflops=answer.mflops,
        latency_ms=round(answer.latency_s * 1e3, 4),
        queue_ms=round(answer.queue_s * 1e3, 4),
        budget_ms=budget_ms,
        budget_mflops=options.budget_mflops,
        budget_met=answer.budget_met,
        stopped_by=answer.reason.value,
        top_k=top_k,
    )


class _Intake:
    """One classify request on its way in: its admission, then its image decoded and submitted. It times
    each part for the front end's costs (service.front_costs), which admission and the engine plan with."""

    def __init__(
        self, service: ServiceState, request: Request, received: float, retry: dict[str, str], lag_s: float
    ) -> None:
        self.service, self.request, self.received, self.retry = service, request, received, retry
        self.lag_s = lag_s  # how long it waited from its first byte for its handler to run
        self.admitted = self.submitted = 0.0
        self.budget_ms: float | None = None
        self.lone = service.alone()  # nothing else in this process when it began: its costs are a lone one's

    def admit(self, options: ClassifyOptions) -> tuple[float | None, Budget]:
        """The request's budget, or ApiError (422 / 503) when admission refuses it."""
        service, engine = self.service, self.service.engine
        budget_ms, budget = _budget(options, service.settings, self.received)
        self.budget_ms = budget_ms
        self.admitted = engine.clock()
        # every request read counts, refused or not: refusals must not freeze what admission plans for
        self.lone = self.lone and service.alone()
        # the server's own part: from the last byte in (a client may send its body tens of ms after its
        # headers: Nagle's algorithm against a delayed ACK), which its budget still counts
        complete = arrival_of(self.request.scope).complete
        read_from = self.received if complete is None else max(self.received, min(complete, self.admitted))
        engine.front_costs.observe_intake(self.admitted - read_from, lone=self.lone)
        in_front = service.others_in_front(fallback=service.in_flight - 1)
        _admit(engine, budget, self.received, budget_ms, self.retry, in_front)  # before decoding: refusals stay cheap
        return budget_ms, budget

    async def submit(self, data: bytes, budget: Budget, options: ClassifyOptions, arrival: Arrival) -> Job | None:
        """Decode the image and hand the job to the engine; None if the client has left meanwhile."""
        service, engine = self.service, self.service.engine
        started = engine.clock()
        try:
            image = service.open(data)  # the header alone: format and pixel limits
            if image.width * image.height <= INLINE_DECODE_PIXELS:
                tensor = service.prepare(image)
            else:
                async with service.off_the_loop():
                    tensor = await anyio.to_thread.run_sync(service.prepare, image, limiter=service.decode_limiter)
        except ImageError as err:
            raise ApiError(err.status, err.code, err.message) from None
        if arrival_of(self.request.scope).gone:
            return None
        job = Job(tensor, budget, self.received, asyncio.get_running_loop().create_future(), top_k=options.top_k)
        # its answer waits for the loop to read the requests begun after it: the engine plans for that
        job.coming = service.others_in_front(fallback=0)
        # and never below two turns of the loop that kept its handler waiting: its answer waits on the same loop
        front, alone = engine.front(), service.alone()
        tail = 0.0 if alone else front.out_tail_s
        job.out_s = max(way_out_s(front, job.coming, alone), LOOP_TURNS * self.lag_s, tail)
        try:
            engine.submit(job, arrival)
        except (QueueFullError, UnavailableError, DeadlineUnmeetableError) as err:
            raise _engine_refusal(err, self.budget_ms, self.retry) from None
        self.submitted = engine.clock()
        engine.front_costs.observe_decode(self.submitted - (self.admitted or started), self.lone and service.alone())
        return job


def _as_sent(answer: Answer, budget: Budget, received: float, now: float) -> Answer:
    """`answer` with its latency, budget and slack measured `now`, at the response, rather than at the
    engine's exit: what the client gets."""
    slack = None if budget.deadline is None else budget.deadline - now
    return dataclasses.replace(answer, latency_s=now - received, budget_met=slack is None or slack >= 0, slack_s=slack)


def _admit(
    engine: Any, budget: Budget, received: float, budget_ms: float | None, retry: dict[str, str], in_front: int
) -> None:
    try:
        engine.admit(budget, received, in_front)
    except DeadlineUnmeetableError as err:  # BacklogError included
        raise _refusal(budget_ms, err, retry) from None


def _engine_refusal(
    err: QueueFullError | UnavailableError | DeadlineUnmeetableError, budget_ms: float | None, retry: dict[str, str]
) -> ApiError:
    """The engine refused a job it was handed (or failed it before it ran): the same answer wherever it happens."""
    if isinstance(err, QueueFullError):
        return ApiError(503, "queue_full", f"the server is at capacity: {err}", headers=retry, outcome="rejected")
    if isinstance(err, UnavailableError):
        return ApiError(503, "unavailable", str(err), headers=retry, outcome="rejected")
    return _refusal(budget_ms, err, retry)


def _refusal(budget_ms: float | None, err: DeadlineUnmeetableError, retry: dict[str, str]) -> ApiError:
    """Admission refused the budget. Overload (BacklogError): 503 with Retry-After, it would fit a less
    busy server or another replica. Otherwise 422, not a 5xx: the budget asks for less than this
    server's first exit typically takes; the client can fix that (a larger budget, or none), a retry
    cannot."""
    budget = "the budget" if budget_ms is None else f"budget_ms={budget_ms:g}"
    if isinstance(err, BacklogError):
        detail = f"the server is too busy for {budget}: {err}"
        return ApiError(503, "overloaded", detail, headers=retry, outcome="rejected")
    return ApiError(422, "budget_too_small", f"{budget} cannot be met on this server: {err}", outcome="rejected")


@router.get("/v1/model", response_model=ModelInfo, summary="Exits, cost, accuracy and the live latency profile")
async def model_info(service: Service) -> ModelInfo:
    runner, settings, profile = service.runner, service.settings, service.profile
    placement = getattr(service.engine, "placement", None)  # the process engine's CPUs, if pinned
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
    # for good or 3 restarts failed within 60 s (service.restart_policy), and says which (health_detail).
    service = getattr(request.app.state, "service", None)
    detail = None
    if service is not None:
        engine = service.engine
        if hasattr(engine, "health_detail"):
            detail = engine.health_detail
        elif engine.error is not None:
            detail = f"the engine failed: {engine.error}"
    if detail is not None:
        return JSONResponse({"error": "engine_failed", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: model loaded, warmed up and calibrated", responses=_error_responses(503))
@router.get("/v2/health/ready", summary="Readiness (KServe v2 alias)", responses=_error_responses(503))
async def readyz(service: Service) -> Response:
    engine = service.engine
    if engine.accepting and not service.shutting_down:
        return JSONResponse({"status": "ready"})
    restarting = getattr(engine, "ready_detail", None)  # the process engine, while it replaces its child
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
