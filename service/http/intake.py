"""The way in of a classification request, shared by every protocol (/v1 and the Open Inference Protocol's
/v2): refusals before the body is read, admission before decoding, images decoded and handed to the engine,
and the engine's refusals mapped to HTTP. One path, so that both protocols get the same admission, limits
and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import numpy as np
from fastapi import Request

from elastic_anytime.service.engine.admission import BacklogError, DeadlineUnmeetableError, way_out_s
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Answer, Arrival, InferenceError, Job, QueueFullError, UnavailableError
from elastic_anytime.service.http.arrival import arrival_of
from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.imaging import ImageError
from elastic_anytime.service.http.metrics import Metrics
from elastic_anytime.service.http.schemas import ClassifyOptions
from elastic_anytime.service.http.state import ServiceState
from elastic_anytime.service.settings import Settings

log = logging.getLogger(__name__)

INLINE_DECODE_PIXELS = 128 * 128  # images up to this size are decoded on the event loop
# an answer needs two turns of the event loop (its pipe read, then its handler), each as long as the one
# that a request waits for its handler to run
LOOP_TURNS = 2


@contextmanager
def counting_refusals(metrics: Metrics) -> Iterator[None]:
    """Count a request that ends in an ApiError by its outcome, a refusal also by its reason, and one whose
    client left before it was read as cancelled."""
    try:
        yield
    except ApiError as err:
        if err.outcome == "cancelled":
            metrics.client_gone()
            raise
        metrics.outcome(err.outcome)
        if err.outcome == "rejected":
            metrics.refused(err.code)
        raise


@dataclasses.dataclass(frozen=True)
class Received:
    """A classify request as the engine counts it: its first byte (the budget's start) and how long its
    handler waited for the event loop after that."""

    at: float
    lag_s: float
    arrival: Arrival


@contextmanager
def classify_request(request: Request, service: ServiceState) -> Iterator[Received]:
    """Around one classify request, /v1 or /v2: tracked in flight, announced to the engine while it is
    read and decoded (a forming batch waits for it, max-wait at most), and counted if it ends in an error."""
    received = arrival_of(request.scope, service.engine.clock).first_byte  # the budget is the client's
    lag_s = service.engine.clock() - received
    with (
        service.track_request(),
        service.metrics.tracking(),
        service.engine.arriving() as arrival,
        counting_refusals(service.metrics),
    ):
        yield Received(received, lag_s, arrival)


def refuse_unless_serving(service: ServiceState) -> dict[str, str]:
    """Refuse (503 + Retry-After) before the body is read when the server cannot serve now or is at
    capacity: under overload a refusal must cost next to nothing. Returns the Retry-After header."""
    settings, engine = service.settings, service.engine
    retry = {"Retry-After": str(settings.retry_after_s)}
    if service.shutting_down or not engine.accepting:
        # the process engine says why while it restarts its inference process; the thread engine has no child
        restarting = None if service.shutting_down else engine.unavailable_detail
        if restarting is not None:
            detail = restarting
        elif service.shutting_down:
            detail = "the server is shutting down"
        elif engine.error is not None:
            detail = f"the engine failed: {engine.error}"
        else:
            detail = "the server is not ready (warming up)"
        raise ApiError(503, "unavailable", detail, headers=retry, outcome="rejected")
    if service.in_flight > settings.max_in_flight:
        detail = f"the server is at capacity: {service.in_flight - 1} requests are being handled"
        raise ApiError(503, "overloaded", detail, headers=retry, outcome="rejected")
    if engine.queue_depth >= settings.queue_limit:
        detail = f"the server is at capacity: {engine.queue_depth} requests are already waiting"
        raise ApiError(503, "queue_full", detail, headers=retry, outcome="rejected")
    return retry


def validation_context(service: ServiceState) -> dict[str, Any]:
    """The server's limits that request options are validated against (service.http.schemas)."""
    settings = service.settings
    return {
        "max_budget_ms": settings.max_budget_ms,
        "max_budget_mflops": settings.max_budget_mflops,
        "num_classes": len(service.runner.classes),
    }


def budget_of(options: ClassifyOptions, settings: Settings, received: float) -> tuple[float | None, Budget]:
    """The budget a request's options ask for (the server's default budget_ms when it gives none)."""
    budget_ms = options.budget_ms if options.budget_ms is not None else settings.default_budget_ms
    budget = Budget(
        deadline=None if budget_ms is None else received + budget_ms / 1e3,
        max_mflops=options.budget_mflops,
        min_confidence=options.min_confidence,
    )
    return budget_ms, budget


class Intake:
    """One classify request on its way in: its admission, then its image(s) decoded and submitted. It times
    each part for the front end's costs (service.engine.front_costs), which admission and the engine plan with."""

    def __init__(
        self, service: ServiceState, request: Request, received: float, retry: dict[str, str], lag_s: float
    ) -> None:
        self.service, self.request, self.received, self.retry = service, request, received, retry
        self.lag_s = lag_s  # how long it waited from its first byte for its handler to run
        self.admitted = self.submitted = 0.0
        self.budget_ms: float | None = None
        # nothing else in this process when it began, nor when it arrived (the rest of a burst, answered or refused
        # by the time its handler runs, had the loop first): its costs are a lone one's
        self.lone = service.alone() and arrival_of(request.scope).others_open == 0

    def admit(self, options: ClassifyOptions) -> tuple[float | None, Budget]:
        """The request's budget, or ApiError (422 / 503) when admission refuses it."""
        service, engine = self.service, self.service.engine
        budget_ms, budget = budget_of(options, service.settings, self.received)
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
        # before decoding: refusals stay cheap; `crowded`: others were read before it since its first byte
        admit(engine, budget, self.received, budget_ms, self.retry, in_front, crowded=not self.lone)
        return budget_ms, budget

    async def submit(
        self,
        data: bytes,
        budget: Budget,
        options: ClassifyOptions,
        arrival: Arrival,
        progress: Callable[[Answer], None] | None = None,
    ) -> Job | None:
        """Decode the image and hand the job to the engine; None if the client has left meanwhile.
        `progress`: a streamed request's sink for every exit it goes on from (service.engine.scheduler.Job)."""
        started = self.service.engine.clock()
        tensor = await self.decode(data)
        if self.gone:
            return None
        job = self.hand_over(tensor, budget, options.top_k, arrival, progress)
        self.observe_decode(started)
        return job

    async def decode(self, data: bytes) -> np.ndarray:
        """Image bytes → the model's input (C, H, W float32); small images on the event loop, larger ones in a worker
        thread (ApiError 4xx for bytes that are not a usable image)."""
        service = self.service
        try:
            image = service.open(data)  # the header alone: format and pixel limits
            if image.width * image.height <= INLINE_DECODE_PIXELS:
                return service.prepare(image)
            async with service.off_the_loop():
                return await anyio.to_thread.run_sync(service.prepare, image, limiter=service.decode_limiter)
        except ImageError as err:
            raise ApiError(err.status, err.code, err.message) from None

    @property
    def gone(self) -> bool:
        """The client has disconnected: no work for nobody."""
        return arrival_of(self.request.scope).gone

    def hand_over(
        self,
        tensor: np.ndarray,
        budget: Budget,
        top_k: int | None,
        arrival: Arrival | None,
        progress: Callable[[Answer], None] | None = None,
    ) -> Job:
        """Hand one model input to the engine as a job (ApiError when the engine refuses it)."""
        service, engine = self.service, self.service.engine
        future = asyncio.get_running_loop().create_future()
        job = Job(tensor, budget, self.received, future, top_k=top_k, progress=progress)
        # its answer waits for the loop to read the requests begun after it: the engine plans for that
        job.coming = service.others_in_front(fallback=0)
        # and never below two turns of the loop that kept its handler waiting: its answer waits on the same loop
        front, alone = engine.front(), service.alone()
        tail = 0.0 if alone else front.out_tail_s
        job.out_s = max(way_out_s(front, job.coming, alone), LOOP_TURNS * self.lag_s, tail)
        try:
            engine.submit(job, arrival)
        except (QueueFullError, UnavailableError, DeadlineUnmeetableError) as err:
            raise engine_refusal(err, self.budget_ms, self.retry) from None
        self.submitted = engine.clock()
        return job

    def observe_decode(self, started: float, images: int = 1) -> None:
        """Time the decoding and hand-over since admission (or `started`), per image, for the front end's costs."""
        spent = self.submitted - (self.admitted or started)
        self.service.engine.front_costs.observe_decode(spent / images, self.lone and self.service.alone())

    def observe_out(self, answer: Answer, sent_latency_s: float) -> None:
        """Time the way out of `answer` (from the engine's exit to its response) for the front end's costs:
        the engine keeps room before deadlines for it, and for a lone request the way in too."""
        handed_in = max(0.0, answer.enqueued_at - self.submitted)
        lone = self.lone and self.service.alone()
        self.service.engine.front_costs.observe_out(sent_latency_s - answer.latency_s, lone=lone, handed_in_s=handed_in)


def as_sent(answer: Answer, budget: Budget, received: float, now: float) -> Answer:
    """`answer` with its latency, budget and slack measured `now`, at the response, rather than at the
    engine's exit: what the client gets."""
    slack = None if budget.deadline is None else budget.deadline - now
    return dataclasses.replace(answer, latency_s=now - received, budget_met=slack is None or slack >= 0, slack_s=slack)


def admit(
    engine: Any,
    budget: Budget,
    received: float,
    budget_ms: float | None,
    retry: dict[str, str],
    in_front: int,
    crowded: bool = False,
) -> None:
    try:
        engine.admit(budget, received, in_front, crowded)
    except DeadlineUnmeetableError as err:  # BacklogError included
        raise refusal(budget_ms, err, retry) from None


def engine_refusal(
    err: QueueFullError | UnavailableError | DeadlineUnmeetableError, budget_ms: float | None, retry: dict[str, str]
) -> ApiError:
    """The engine refused a job it was handed (or failed it before it ran): the same answer wherever it happens."""
    if isinstance(err, QueueFullError):
        return ApiError(503, "queue_full", f"the server is at capacity: {err}", headers=retry, outcome="rejected")
    if isinstance(err, UnavailableError):
        return ApiError(503, "unavailable", str(err), headers=retry, outcome="rejected")
    return refusal(budget_ms, err, retry)


# what a handed-over job may fail with that has an answer of its own (`job_failure`)
JOB_FAILURES = (QueueFullError, UnavailableError, DeadlineUnmeetableError, InferenceError)


def job_failure(err: BaseException, budget_ms: float | None, retry: dict[str, str]) -> ApiError:
    """What a client is answered when its job failed: the engine's refusal, or the inference's failure (any
    other error is a bug: logged, and answered as one)."""
    if isinstance(err, QueueFullError | UnavailableError | DeadlineUnmeetableError):
        return engine_refusal(err, budget_ms, retry)
    if isinstance(err, InferenceError):
        return ApiError(500, "inference_failed", str(err))
    log.error("a request failed", exc_info=err)
    return ApiError(500, "internal_error", "the server failed on this request; it has been logged")


def refusal(budget_ms: float | None, err: DeadlineUnmeetableError, retry: dict[str, str]) -> ApiError:
    """Admission refused the budget. Overload (BacklogError): 503 with Retry-After, it would fit a less
    busy server or another replica. Otherwise 422, not a 5xx: the budget asks for less than this
    server's first exit typically takes; the client can fix that (a larger budget, or none), a retry
    cannot."""
    budget = "the budget" if budget_ms is None else f"budget_ms={budget_ms:g}"
    if isinstance(err, BacklogError):
        detail = f"the server is too busy for {budget}: {err}"
        return ApiError(503, "overloaded", detail, headers=retry, outcome="rejected")
    return ApiError(422, "budget_too_small", f"{budget} cannot be met on this server: {err}", outcome="rejected")
