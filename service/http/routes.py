"""The classify routes: /v1/classify (a multipart form, or JSON with a base64 image) and /v1/classify/raw
(the image as the body, options in the query string). Bodies are parsed in service.http.request_parsing;
small images are decoded on the event loop (a fraction of a millisecond, less than the two thread
hand-offs a worker costs on a busy machine), larger ones in worker threads; the model runs in the engine."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from elastic_anytime.service.engine.types import Arrival, ClientGoneError
from elastic_anytime.service.http.arrival import arrival_of
from elastic_anytime.service.http.classify_answer import classify_response
from elastic_anytime.service.http.dependencies import error_responses
from elastic_anytime.service.http.intake import (
    JOB_FAILURES,
    Intake,
    classify_request,
    job_failure,
    refuse_unless_serving,
    validation_context,
)
from elastic_anytime.service.http.request_parsing import (
    check_raw_media_type,
    openapi_body,
    openapi_raw,
    parse_form_or_json,
    query_options,
    read_form_or_json,
    read_raw_image,
)
from elastic_anytime.service.http.schemas import (
    ClassifyResponse,
)
from elastic_anytime.service.http.state import ServiceState

router = APIRouter()


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Classify an image within a latency and/or compute budget",
    description=(
        "Send the image as multipart (`image` file + optional form fields) or as JSON (`image` base64). "
        "The server runs the network stage by stage and answers from the deepest exit that fits "
        "`budget_ms` (from when it received the request), `budget_mflops` and `min_confidence`."
    ),
    responses=error_responses(400, 413, 415, 422, 503),
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
    responses=error_responses(400, 413, 415, 422, 503),
    openapi_extra=openapi_raw(),
)
async def classify_raw(request: Request) -> ClassifyResponse:
    return await _serve(request, raw=True)


async def _serve(request: Request, raw: bool) -> ClassifyResponse:
    service: ServiceState = request.app.state.service  # not `Service`: no dependency to solve on the hot path
    with classify_request(request, service) as received:
        return await _classify(request, service, received.at, received.arrival, raw, received.lag_s)


async def _classify(
    request: Request, service: ServiceState, received: float, arrival: Arrival, raw: bool, lag_s: float
) -> ClassifyResponse:
    settings, engine = service.settings, service.engine
    retry = refuse_unless_serving(service)  # before reading the body: under overload a refusal costs next to nothing
    context = validation_context(service)
    intake = Intake(service, request, received, retry, lag_s)
    if raw:  # the options come first, so a budget that cannot be met is refused before the body is read
        check_raw_media_type(request)
        options = query_options(request, context)
        budget_ms, budget = intake.admit(options)
        data = await read_raw_image(request, settings.max_image_bytes)
        async with service.reading(received):
            job = await intake.submit(data, budget, options, arrival)
    else:
        body = await read_form_or_json(request, settings)
        async with service.reading(received):  # one request's parsing and decoding at a time: see ServiceState.reading
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
