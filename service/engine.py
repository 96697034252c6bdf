"""The anytime engine: an earliest-deadline-first queue, a batcher, and a stage-by-stage executor
in one dedicated inference thread (the event loop never runs the model).

A batch runs stage by stage. After every exit the policy decides per request whether the next stage
still fits; those that stop are answered at once (their asyncio future resolved thread-safely on
its loop) and leave the batch, the rest go on with a smaller batch. Exit 0 always runs.
No FastAPI and no torch here: the model is reached through the runner's hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.policy import Budget, Reason, affordable_wait, decide, first_exit_fits
from service.profile import LatencyProfile, calibrate

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """Admission control: too many requests waiting."""


class UnavailableError(RuntimeError):
    """The engine is not serving (warming up, shutting down or stopped)."""


class DeadlineUnmeetableError(RuntimeError):
    """Even exit 0 cannot answer before the deadline (only raised when the engine rejects such requests)."""


class InferenceError(RuntimeError):
    """The model failed on a batch."""


@dataclass
class Answer:
    class_id: int
    confidence: float
    exit_index: int
    mflops: float
    latency_s: float
    queue_s: float
    budget_met: bool
    reason: Reason
    slack_s: float | None = None  # deadline minus answer time; None without a deadline
    top_k: list[tuple[int, float]] | None = None


@dataclass(eq=False)
class Job:
    """One request inside the engine. `received` is on the engine's clock; the deadline derives from it."""

    tensor: Any
    budget: Budget
    received: float
    future: asyncio.Future
    top_k: int | None = None
    seq: int = 0
    enqueued: float = 0.0

    def __lt__(self, other: Job) -> bool:  # heap order: earliest deadline, then arrival
        return (self.budget.urgency, self.seq) < (other.budget.urgency, other.seq)


class Observer(Protocol):
    """Where the engine reports what happened (metrics). Failures here are logged and ignored."""

    def stage(self, index: int, batch_size: int, seconds: float) -> None: ...
    def batch(self, size: int) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def queued(self, depth: int) -> None: ...
    def answered(self, answer: Answer, budget: Budget) -> None: ...


@dataclass
class EngineConfig:
    max_batch_size: int = 8
    max_wait_s: float = 0.002
    queue_limit: int = 256
    margin_s: float = 0.001
    quantile: str = "p95"
    reject_unmeetable: bool = False
    warmup_runs: int = 3
    calibration_runs: int = 20


@dataclass
class Engine:
    runner: Any  # service.runner.ModelRunner or anything with the same hooks
    profile: LatencyProfile
    config: EngineConfig = field(default_factory=EngineConfig)
    observer: Observer | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._heap: list[Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    # -- event-loop side ---------------------------------------------------------------------------

    def start(self, calibrate_first: bool = True) -> None:
        """Start the inference thread; it calibrates the profile first, then sets `ready` and serves."""
        self._thread = threading.Thread(
            target=self._main, args=(calibrate_first,), name="elastic-inference", daemon=True
        )
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._heap)

    @property
    def accepting(self) -> bool:
        return self.ready.is_set() and not self._closed and self.error is None

    def predicted_first_s(self, batch_size: int = 1) -> float:
        return self.profile.predict(0, batch_size, self.config.quantile)

    def can_meet(self, budget: Budget, now: float | None = None) -> bool:
        """Whether exit 0 could still answer in time if the request started now."""
        now = self.clock() if now is None else now
        return first_exit_fits(budget, now, self.predicted_first_s(), self.config.margin_s)

    def submit(self, job: Job) -> None:
        """Queue `job`; its future gets an `Answer` or an exception. Raises QueueFullError or UnavailableError."""
        with self._cond:
            if self._closed:
                raise UnavailableError("the server is shutting down")
            if len(self._heap) >= self.config.queue_limit:
                raise QueueFullError(f"{len(self._heap)} requests are already waiting")
            job.seq = next(self._seq)
            job.enqueued = self.clock()
            heapq.heappush(self._heap, job)
            depth = len(self._heap)
            self._cond.notify()
        self._observe("queued", depth)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop accepting, answer everything already queued, then end the thread (blocking).

        Jobs still queued after `timeout` seconds are failed with UnavailableError rather than left hanging.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            leftover, self._heap = self._heap, []
        for job in leftover:
            _resolve(job.future, error=UnavailableError("the server shut down before this request ran"))

    # -- inference thread --------------------------------------------------------------------------

    def _main(self, calibrate_first: bool) -> None:
        try:
            if calibrate_first:
                started = time.perf_counter()
                calibrate(self.profile, self.runner.time_pass, self.config.warmup_runs, self.config.calibration_runs)
                log.info("latency profile calibrated in %.2fs", time.perf_counter() - started)
            self.ready.set()
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        except BaseException as err:  # a dead inference thread must not leave requests waiting forever
            self.error = err
            log.exception("inference thread failed")
            with self._cond:
                self._closed = True
                leftover, self._heap = self._heap, []
            for job in leftover:
                _resolve(job.future, error=UnavailableError(f"inference thread failed: {err}"))

    def _next_batch(self) -> list[Job] | None:
        """Wait for work, then gather up to max_batch_size jobs by EDF; None once closed and drained.

        After the first job the batcher waits up to max_wait for more, but never longer than the most
        urgent job can spare without losing an exit (see `policy.affordable_wait`).
        """
        cfg = self.config
        with self._cond:
            while not self._heap:
                if self._closed:
                    return None
                self._cond.wait()
            collecting_since = self.clock()
            while len(self._heap) < cfg.max_batch_size and not self._closed:
                now = self.clock()
                size = min(len(self._heap) + 1, cfg.max_batch_size)
                stage_s = [self.profile.predict(k, size, cfg.quantile) for k in range(self.profile.num_exits)]
                spare = affordable_wait(self._heap[0].budget, now, stage_s, cfg.margin_s)
                timeout = min(collecting_since + cfg.max_wait_s - now, spare)
                if timeout <= 0 or not self._cond.wait(timeout):
                    break
            batch = []
            while self._heap and len(batch) < cfg.max_batch_size:
                job = heapq.heappop(self._heap)
                if not job.future.done():  # the client may have gone away
                    batch.append(job)
            depth = len(self._heap)
        self._observe("queued", depth)
        return batch

    def _run(self, batch: list[Job]) -> None:
        cfg, runner = self.config, self.runner
        start = self.clock()
        for job in batch:
            self._observe("queue_wait", start - job.enqueued)
        if cfg.reject_unmeetable:
            late = [j for j in batch if not first_exit_fits(j.budget, start, self.predicted_first_s(len(batch)), 0.0)]
            for job in late:
                _resolve(job.future, error=DeadlineUnmeetableError("the deadline passed before exit 0 could run"))
            batch = [j for j in batch if j not in late]
        if not batch:
            return
        self._observe("batch", len(batch))
        active = batch
        try:
            features = runner.batch([job.tensor for job in active])
            for k in range(runner.num_exits):
                t0 = self.clock()
                features, probs, confidence, class_id = runner.step(k, features)
                now = self.clock()
                self.profile.observe(k, len(active), now - t0)
                self._observe("stage", k, len(active), now - t0)
                keep = self._after_exit(k, active, probs, confidence, class_id, now, start)
                if not keep:
                    return
                if len(keep) < len(active):
                    features = runner.select(features, keep)
                    active = [active[row] for row in keep]
        except Exception as err:
            log.exception("inference failed on a batch of %d", len(active))
            for job in active:
                _resolve(job.future, error=InferenceError(f"inference failed: {err}"))

    def _after_exit(
        self,
        k: int,
        active: list[Job],
        probs: Any,
        confidence: list[float],
        class_id: list[int],
        now: float,
        start: float,
    ) -> list[int]:
        """Apply the policy after exit k: answer the requests that stop, return the rows that go on."""
        runner = self.runner
        next_mflops = runner.exit_mflops[k + 1] if k + 1 < runner.num_exits else math.inf
        reasons = [self._decide(k, job, confidence[row], now, 0.0, next_mflops) for row, job in enumerate(active)]
        # the time check predicts with the batch that would really go on: those stopping anyway leave it
        going_on = sum(r is Reason.CONTINUE for r in reasons)
        predicted = self.profile.predict(k + 1, going_on, self.config.quantile) if going_on else 0.0
        keep = []
        for row, job in enumerate(active):
            reason = reasons[row]
            if reason is Reason.CONTINUE:
                reason = self._decide(k, job, confidence[row], now, predicted, next_mflops)
            if reason is Reason.CONTINUE:
                keep.append(row)
            else:
                top = runner.top_k(probs, row, job.top_k) if job.top_k else None
                self._answer(job, k, class_id[row], confidence[row], reason, top, start)
        return keep

    def _decide(
        self, k: int, job: Job, confidence: float, now: float, predicted_next_s: float, next_mflops: float
    ) -> Reason:
        return decide(
            k, self.runner.num_exits, confidence, job.budget, now, predicted_next_s, next_mflops, self.config.margin_s
        )

    def _answer(
        self, job: Job, exit_index: int, class_id: int, confidence: float, reason: Reason, top: Any, started: float
    ) -> None:
        now = self.clock()
        deadline = job.budget.deadline
        answer = Answer(
            class_id=int(class_id),
            confidence=float(confidence),
            exit_index=exit_index,
            mflops=self.runner.exit_mflops[exit_index],
            latency_s=now - job.received,
            queue_s=max(0.0, started - job.enqueued),
            budget_met=deadline is None or now <= deadline,
            reason=reason,
            slack_s=None if deadline is None else deadline - now,
            top_k=top,
        )
        _resolve(job.future, answer=answer)
        self._observe("answered", answer, job.budget)

    def _observe(self, hook: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, hook)(*args)
        except Exception:  # a metric must never fail a request
            log.warning("observer hook %s failed", hook, exc_info=True)


def _resolve(future: asyncio.Future, answer: Answer | None = None, error: BaseException | None = None) -> None:
    """Set a future from the inference thread, on its own event loop, unless it is already done."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(answer)

    with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
        future.get_loop().call_soon_threadsafe(settle)
