"""POST /v1/classify/stream: the answer of every exit as soon as it has run, as server-sent events.

The same inputs, limits, admission and metrics as /v1/classify (service.http.intake). Everything that
/v1/classify refuses is refused the same way before the stream opens. Then one `exit` event per exit
the request went on from, and a `final` event with /v1's answer; or an `error` event if the request
fails after the stream opened. The engine reads every exit head for a streamed request (its
Job.progress); a client that disconnects stops its work, as on /v1.
"""

from __future__ import annotations

from contextlib import ExitStack

from fastapi import APIRouter, Request
from fastapi.responses import Response

from elastic_anytime.service.http.answer_stream import AnswerStream
from elastic_anytime.service.http.arrival import arrival_of
from elastic_anytime.service.http.intake import Intake, classify_request, refuse_unless_serving, validation_context
from elastic_anytime.service.http.request_parsing import openapi_body, parse_form_or_json, read_form_or_json
from elastic_anytime.service.http.schemas import ErrorResponse
from elastic_anytime.service.http.sse import MEDIA_TYPE, EventStreamResponse
from elastic_anytime.service.http.state import ServiceState

router = APIRouter()

# one event (OpenAPI 3.1 has a text/event-stream schema describe each event: its fields as an SSE client reads them)
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["exit", "final", "error"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the exit index"},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "one line of JSON"},
    },
}
EVENTS_DOC = """`event: exit` per exit the request went on from, then `event: final`; each with `id: <exit index>`
and `data: <one line of JSON>`. exit: {exit, exit_name, num_exits, label, class_id, confidence, top_k (if asked),
latency_ms, mflops, final: false}. final: the /v1/classify answer plus `final: true`. `event: error`
{error, detail} if the request fails after the stream opened."""


@router.post(
    "/v1/classify/stream",
    summary="Classify an image and stream the answer of every exit as it runs (server-sent events)",
    description=(
        "The same body, fields and limits as `/v1/classify` (multipart or JSON). Every exit the request goes "
        "on from sends an `exit` event as soon as it has run; the last event, `final`, is the answer "
        "`/v1/classify` gives, at the latest when the budget's deadline stops the request. Bad input and "
        "refusals are answered as on `/v1/classify`, before the stream opens."
    ),
    response_class=Response,
    responses={
        200: {"description": EVENTS_DOC, "content": {MEDIA_TYPE: {"schema": EVENT_SCHEMA}}},
        **{status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 503)},
    },
    openapi_extra=openapi_body(),
)
async def classify_stream(request: Request) -> Response:
    service: ServiceState = request.app.state.service
    with ExitStack() as request_scope:  # the request's books stay open until its last event (AnswerStream.hold)
        received = request_scope.enter_context(classify_request(request, service))
        retry = refuse_unless_serving(service)  # before reading the body, as /v1
        context = validation_context(service)
        intake = Intake(service, request, received.at, retry, received.lag_s)
        body = await read_form_or_json(request, service.settings)
        stream = AnswerStream(intake)
        async with service.reading(received.at):  # one request's parsing and decoding at a time, as /v1
            data, options = await parse_form_or_json(request, body, service, context)
            _, budget = intake.admit(options)
            job = await intake.submit(data, budget, options, received.arrival, progress=stream.sink)
        if job is None:  # the client left while it was read: no work for nobody
            service.metrics.client_gone()
            return Response(status_code=499)
        stream.follow(job, budget, options)
        request_scope.callback(arrival_of(request.scope).on_disconnect(lambda: service.engine.cancel(job)))
        service.submitted += 1
        request_scope.callback(_count_down, service)
        if not await stream.opening():  # the client left before exit 0: its work stopped (engine.cancel)
            service.metrics.client_gone()
            return Response(status_code=499)
        stream.hold(request_scope.pop_all())
    return EventStreamResponse(stream.events(), on_close=stream.close)


def _count_down(service: ServiceState) -> None:
    service.submitted -= 1
