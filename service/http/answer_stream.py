"""One streamed classify request once its job is in the engine: the partial answers of the exits it goes on
from and then its final answer, in the order the engine made them, as server-sent events.

The stream opens only when the first of them comes (exit 0 at the latest), so that a refusal the engine
makes after the job was handed over (its queue, or a wait behind other work) is still answered as
/v1/classify answers it: a status and a JSON error, not an event. After that an error is an `error`
event, and the stream ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Answer, ClientGoneError, Job
from elastic_anytime.service.http.classify_answer import classify_response, top_k_of
from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.intake import Intake, job_failure
from elastic_anytime.service.http.schemas import ClassifyOptions
from elastic_anytime.service.http.sse import sse_event

log = logging.getLogger(__name__)


class AnswerStream:
    """Collects a job's partial answers (`sink`, its progress sink) and its end (its future), in order."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.job: Job | None = None
        self.budget: Budget | None = None
        self.options: ClassifyOptions | None = None
        self._updates: asyncio.Queue[Answer | asyncio.Future] = asyncio.Queue()
        self._first: Answer | asyncio.Future | None = None
        self._last_exit = 0
        self._ended = False  # the final or the error event was made: nothing left to cancel
        self._books: ExitStack | None = None  # the request's books (in flight, announced), open while it runs

    def sink(self, partial: Answer) -> None:
        """The job's progress sink (event loop): it went on from an exit; this is what it would have answered."""
        self._updates.put_nowait(partial)

    def follow(self, job: Job, budget: Budget, options: ClassifyOptions) -> None:
        """Watch `job` (just submitted): its end comes after every partial answer already made."""
        self.job, self.budget, self.options = job, budget, options
        job.future.add_done_callback(self._updates.put_nowait)

    async def opening(self) -> bool:
        """Wait for the first update. False: the client left meanwhile (its work stopped). Raises ApiError
        when the job failed before any exit: the stream never opens, the client gets /v1's error."""
        self._first = await self._updates.get()
        if isinstance(self._first, asyncio.Future):
            error = self._first.exception()
            if isinstance(error, ClientGoneError):
                return False
            if error is not None:
                raise self._failure(error)
        return True

    def hold(self, books: ExitStack) -> None:
        """Keep the request's books open (service.http.intake.classify_request: in flight, announced to the engine)
        until its last event is made or the stream ends."""
        self._books = books

    async def events(self) -> AsyncIterator[bytes]:
        """The events, from the first update (see `opening`) to the final or error event."""
        update = self._first
        while True:
            assert update is not None
            if not isinstance(update, asyncio.Future):
                yield self._exit_event(update)
                update = await self._updates.get()
                continue
            error = update.exception()
            if isinstance(error, ClientGoneError):  # nobody to tell: the stream's close counts it
                return
            self._ended = True
            if error is None:
                event = self._final_event(update.result())
                self._close_books(None)
            else:
                failure = self._failure(error)
                event = sse_event("error", self._last_exit, {"error": failure.code, "detail": failure.detail})
                self._close_books(failure)
            yield event  # as /v1, the request leaves the books when its answer is made, before it is written
            return

    def close(self) -> None:
        """The response is over: a job still running is cancelled (its client left mid-stream), and the
        request leaves the books if it has not yet."""
        service = self.intake.service
        if not self._ended:
            if self.job is not None:
                service.engine.cancel(self.job)
            service.metrics.client_gone()
        self._close_books(None)

    def _close_books(self, error: ApiError | None) -> None:
        books, self._books = self._books, None
        if books is None:
            return
        if error is None:
            books.close()
        else:  # counted as /v1 counts an ApiError (service.http.intake.counting_refusals)
            books.__exit__(type(error), error, None)

    def _exit_event(self, partial: Answer) -> bytes:
        service = self.intake.service
        runner = partial.runner or service.runner
        classes = runner.classes
        data: dict[str, Any] = {
            "exit": partial.exit_index,
            "exit_name": runner.exit_names[partial.exit_index],
            "num_exits": runner.num_exits,
            "label": classes[partial.class_id],
            "class_id": partial.class_id,
            "confidence": partial.confidence,
        }
        top_k = top_k_of(partial, classes)
        if top_k is not None:
            data["top_k"] = [entry.model_dump() for entry in top_k]
        latency_s = service.engine.clock() - self.intake.received  # the same clock as /v1's latency_ms
        data.update(latency_ms=round(latency_s * 1e3, 4), mflops=partial.mflops, final=False)
        self._last_exit = partial.exit_index
        return sse_event("exit", partial.exit_index, data)

    def _final_event(self, answer: Answer) -> bytes:
        assert self.budget is not None and self.options is not None
        intake = self.intake
        response = classify_response(intake, answer, self.budget, intake.budget_ms, self.options.budget_mflops)
        return sse_event("final", answer.exit_index, {**response.model_dump(mode="json"), "final": True})

    def _failure(self, error: BaseException) -> ApiError:
        """The error /v1/classify would answer for this failure of the job."""
        return job_failure(error, self.intake.budget_ms, self.intake.retry)
