"""One Open Inference Protocol inference request: N images under one budget, through the same way in as
/v1 (service.http.intake: refusals before the body is read, one admission before decoding, each image decoded
and handed to the engine as a job of its own, so that each stops at its own exit).

Limits count images: the body may hold `max_images_per_request` images of `max_image_bytes` each, and the
engine's queue limit counts every image. A request is answered whole or refused whole: should the engine
refuse one of its images (overload), the others leave the engine and the request gets the refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio
from fastapi import Request, Response
from pydantic import ValidationError

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Answer, ClientGoneError, Job
from elastic_anytime.service.http.arrival import arrival_of
from elastic_anytime.service.http.bodies import read_limited
from elastic_anytime.service.http.errors import ApiError, field_errors, summary
from elastic_anytime.service.http.intake import (
    JOB_FAILURES,
    Intake,
    as_sent,
    classify_request,
    job_failure,
    refuse_unless_serving,
    validation_context,
)
from elastic_anytime.service.http.schemas import ClassifyOptions
from elastic_anytime.service.http.state import ServiceState
from elastic_anytime.service.http.v2.identity import model_name, model_version
from elastic_anytime.service.http.v2.outputs import OUTPUT_NAMES, PROBABILITIES, ImageAnswer, output_tensors
from elastic_anytime.service.http.v2.request_body import InferRequest, parse_header_length, parse_infer_request
from elastic_anytime.service.http.v2.response_body import encode_response
from elastic_anytime.service.settings import Settings

INLINE_PARSE_BYTES = 64 * 1024  # larger bodies (base64 or JSON numbers of many images) are parsed in a thread
JSON_OVERHEAD_BYTES = 64 * 1024  # room in the body for the JSON header around the images


def body_limit(settings: Settings) -> int:
    """Largest /v2 body: `max_images_per_request` images as base64 (4/3 of their bytes), plus the JSON around."""
    return settings.max_images_per_request * (settings.max_image_bytes * 4 // 3) + JSON_OVERHEAD_BYTES


async def infer(request: Request, service: ServiceState) -> Response:
    """Serve one inference request for the model the route resolved (service.http.v2.identity)."""
    with classify_request(request, service) as received:  # counted and announced exactly as a /v1 request
        return await _infer(request, service, received.at, received.lag_s, received.arrival)


async def _infer(request: Request, service: ServiceState, received: float, lag_s: float, arrival: Any) -> Response:
    settings, engine = service.settings, service.engine
    retry = refuse_unless_serving(service)  # before reading the body, as on /v1
    body = await _read_body(request, settings)
    intake = Intake(service, request, received, retry, lag_s)
    async with service.reading(received):  # one request's parsing and decoding at a time: see ServiceState.reading
        parsed = await _parse(request, body, service)
        count = parsed.count
        if engine.queue_depth + count > settings.queue_limit:  # the queue limit counts images
            detail = f"the server is at capacity: {engine.queue_depth} images are waiting and this request adds {count}"
            raise ApiError(503, "queue_full", detail, headers=retry, outcome="rejected")
        options = _options(parsed, service)
        budget_ms, budget = intake.admit(options)  # one admission for the request, before decoding
        top_k = len(service.runner.classes) if any(o.name == PROBABILITIES for o in parsed.outputs) else None
        jobs = await _submit(intake, parsed, budget, top_k, arrival)
    if jobs is None:  # the client left while it was read
        service.metrics.client_gone()
        return Response(status_code=499)
    forget = arrival_of(request.scope).on_disconnect(lambda: _cancel(engine, jobs))
    service.submitted += 1
    try:
        answers, answered_at = await _answers(engine, jobs)
    except ClientGoneError:
        service.metrics.client_gone()
        return Response(status_code=499)
    except JOB_FAILURES as err:
        raise job_failure(err, budget_ms, retry) from None
    finally:
        forget()
        service.submitted -= 1
    return _respond(service, intake, parsed, answers, answered_at, budget, budget_ms)


async def _read_body(request: Request, settings: Settings) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":  # a compressed body could inflate past every limit: not taken
        raise ApiError(400, "unsupported_content_encoding", f"Content-Encoding {encoding!r} is not accepted")
    limit = body_limit(settings)
    raw_length = request.headers.get("content-length")
    if raw_length is not None:
        try:
            declared = int(raw_length)
        except ValueError:
            raise ApiError(400, "bad_content_length", f"Content-Length {raw_length!r} is not a number") from None
        if declared > limit:
            raise ApiError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    body = await read_limited(request, limit)
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty; send an inference request")
    return body


async def _parse(request: Request, body: bytes, service: ServiceState) -> InferRequest:
    settings, runner = service.settings, service.runner
    header_length = parse_header_length(request.headers.get("inference-header-content-length"), len(body))
    kwargs = {
        "outputs": OUTPUT_NAMES,
        "input_shape": tuple(runner.input_size),
        "max_images": settings.max_images_per_request,
        "max_image_bytes": settings.max_image_bytes,
    }
    json_bytes = len(body) if header_length is None else header_length
    if json_bytes <= INLINE_PARSE_BYTES:
        return parse_infer_request(body, header_length, **kwargs)
    async with service.off_the_loop():  # megabytes of JSON: keep them off the event loop
        return await anyio.to_thread.run_sync(lambda: parse_infer_request(body, header_length, **kwargs))


def _options(parsed: InferRequest, service: ServiceState) -> ClassifyOptions:
    """The budget parameters, validated as /v1 validates its fields (the same caps), as a 400."""
    try:
        return ClassifyOptions.model_validate(parsed.options, strict=True, context=validation_context(service))
    except ValidationError as err:  # a cap's ValueError comes wrapped in it
        raise ApiError(400, "invalid_parameter", summary(field_errors(err.errors()))) from None


async def _submit(
    intake: Intake, parsed: InferRequest, budget: Budget, top_k: int | None, arrival: Any
) -> list[Job] | None:
    """Decode every image, then hand all to the engine at once, so that they can share a batch; None if the
    client left meanwhile. Each image after the first is announced to the engine like a request on its way."""
    engine = intake.service.engine
    started = engine.clock()
    with contextlib.ExitStack() as stack:
        arrivals = [arrival, *(stack.enter_context(engine.arriving()) for _ in range(parsed.count - 1))]
        if parsed.images is not None:
            tensors = [await intake.decode(data) for data in parsed.images]
        else:
            tensors = list(parsed.pixels)  # type: ignore[arg-type]
        if intake.gone:
            return None
        jobs: list[Job] = []
        try:
            for tensor, announced in zip(tensors, arrivals, strict=True):
                jobs.append(intake.hand_over(tensor, budget, top_k, announced))
        except ApiError:
            _cancel(engine, jobs)  # answered whole or refused whole
            raise
    intake.observe_decode(started, images=len(jobs))
    return jobs


def _cancel(engine: Any, jobs: list[Job]) -> None:
    for job in jobs:
        engine.cancel(job)
    for job in jobs:  # their errors are this request's, read here: no "exception never retrieved" warnings
        if job.future.done() and not job.future.cancelled():
            job.future.exception()


async def _answers(engine: Any, jobs: list[Job]) -> tuple[list[Answer], list[float]]:
    """Every image's answer and when it came back; the first failure (a refusal) cancels the others."""
    answered_at = [0.0] * len(jobs)  # on the engine's clock, as `received`
    for index, job in enumerate(jobs):
        job.future.add_done_callback(lambda _, index=index: answered_at.__setitem__(index, engine.clock()))
    futures = [job.future for job in jobs]
    await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
    now = engine.clock()
    answered_at = [at or now for at in answered_at]  # a callback not run yet: its answer is here now
    failures = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    if failures:
        _cancel(engine, jobs)
        # a refusal or a failure says more than the cancellations it caused
        raise next((e for e in failures if not isinstance(e, ClientGoneError)), failures[0])
    return [f.result() for f in futures], answered_at


def _respond(
    service: ServiceState,
    intake: Intake,
    parsed: InferRequest,
    answers: list[Answer],
    answered_at: list[float],
    budget: Budget,
    budget_ms: float | None,
) -> Response:
    engine, received = service.engine, intake.received
    runner = answers[0].runner or service.runner  # the model that answered, even if a reload swapped it meanwhile
    classes = runner.classes
    images = []
    for answer, at in zip(answers, answered_at, strict=True):
        probabilities = None
        if answer.top_k:
            probabilities = [0.0] * len(classes)
            for class_id, p in answer.top_k:
                probabilities[class_id] = p
        met = budget.deadline is None or at <= budget.deadline
        images.append(ImageAnswer(
            label=classes[answer.class_id], confidence=answer.confidence, exit=answer.exit_index,
            mflops=answer.mflops, latency_ms=round((at - received) * 1e3, 4), budget_met=met,
            stopped_by=answer.reason.value, probabilities=probabilities,
        ))  # fmt: skip
    now = engine.clock()
    # the way out of the last answer to come back: the front end's costs (as /v1 times its one answer)
    last = max(range(len(answers)), key=answered_at.__getitem__)
    intake.observe_out(answers[last], now - received)
    for answer in answers:  # counted per image, on the client's clock (to the response), as /v1 counts
        sent = as_sent(answer, budget, received, now)
        service.metrics.safely(lambda sent=sent: service.metrics.answered(sent, budget))
    parameters: dict[str, Any] = {"latency_ms": round((now - received) * 1e3, 4), "images": len(answers),
                                  "num_exits": runner.num_exits}  # fmt: skip
    parameters["budget_met"] = budget.deadline is None or now <= budget.deadline
    for key, value in (("budget_ms", budget_ms), ("budget_mflops", budget.max_mflops),
                       ("min_confidence", budget.min_confidence)):  # fmt: skip
        if value is not None:  # a parameter is a number, a string or a boolean: absent rather than null
            parameters[key] = value
    header: dict[str, Any] = {"model_name": model_name(service), "model_version": model_version(runner)}
    if parsed.id is not None:
        header["id"] = parsed.id
    header["parameters"] = parameters
    body, headers, media_type = encode_response(header, output_tensors(images, parsed.outputs, len(classes)))
    return Response(body, media_type=media_type, headers=headers)
