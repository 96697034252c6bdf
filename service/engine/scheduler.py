"""The anytime engine: an earliest-deadline-first queue and its batcher, served by one dedicated
inference thread (the event loop never runs the model). The queue admits requests
(service.engine.admission), the batcher gathers batches, and each batch runs stage by stage in
service.engine.executor; answers leave through service.engine.answer_sink, and the idle thread's work
is service.engine.idle_work.

The batcher starts a batch as soon as the thread is free, and waits (at most max-wait, never past
what the most urgent request can spare) only while other requests are on their way (announced by
the HTTP layer with `arriving()` while it reads and decodes them): a lone request never waits for
company that is not coming.
No FastAPI and no torch here: the model is reached through the runner's hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elastic_anytime.service.engine.admission import Ahead, DeadlineUnmeetableError, FrontEnd, check, way_out_s
from elastic_anytime.service.engine.answer_sink import AnswerSink
from elastic_anytime.service.engine.executor import BatchExecutor
from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.engine.guardrail import Guardrail
from elastic_anytime.service.engine.idle_work import idle_wait_s, refresh_profile, rerun_guardrail
from elastic_anytime.service.engine.policy import Budget, affordable_wait, queue_allows
from elastic_anytime.service.engine.profile import QUANTILES, LatencyProfile, calibrate
from elastic_anytime.service.engine.types import (
    Arrival,
    ClientGoneError,
    EngineConfig,
    Job,
    Observer,
    QueueFullError,
    UnavailableError,
)
from elastic_anytime.service.engine.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass
class Engine:
    runner: Any  # service.engine.runner.ModelRunner or anything with the same hooks
    profile: LatencyProfile
    config: EngineConfig = field(default_factory=EngineConfig)
    observer: Observer | None = None
    clock: Callable[[], float] = time.monotonic
    guardrail: Guardrail | None = None  # re-runs a share of early answers to the final exit while idle; None: off

    def __post_init__(self) -> None:
        self._heap: list[Job] = []
        self._lock = threading.Lock()
        self._wakeup = Wakeup()  # not a Condition: see service.engine.wakeup
        self._sleeping = False  # the inference thread waits for a wake-up (lock held to read or change)
        self._seq = itertools.count()
        self._closed = False
        self._arriving = 0  # requests announced by `arriving()` and not yet submitted
        self.sink = AnswerSink()  # where answers, refusals and failures leave the engine
        self._executor = BatchExecutor(self.config, self.clock, self.sink, self, self._observe)
        self._thread: threading.Thread | None = None
        self._swap: tuple[Any, LatencyProfile, threading.Event] | None = None  # hot reload, see swap_model
        quantile = self.config.handoff_quantile
        # measured by the request handlers (service.engine.front_costs); with the process engine the parent
        # measures them and sends its figures here with each job instead
        self.front_costs = FrontEndCosts(None if quantile is None else QUANTILES[quantile], self.clock)
        self.front_from_parent: FrontEnd | None = None
        self._running = False  # inference thread: a batch is being run (written by it alone)
        self._batches = 0  # inference thread: batches started so far
        # (requests the front end announced as on their way, the deadline of the job that announced them)
        self._coming: tuple[int, float | None] = (0, None)
        self._idle_since = 0.0  # inference thread: when it last finished running something
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._intake: Callable[[], bool] | None = None  # see feed_from
        self._intake_fd = -1
        self._intake_poll = select.poll()

    # -- event-loop side ---------------------------------------------------------------------------

    def start(self, calibrate_first: bool = True) -> None:
        """Start the inference thread; it calibrates the profile first, then sets `ready` and serves."""
        interval = self.config.gil_switch_interval_s
        if interval is not None and sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)  # process-wide: see EngineConfig.gil_switch_interval_s
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

    def can_meet(self, budget: Budget, now: float | None = None) -> bool:
        """Whether admission would take a request with `budget` received `now` (default: now), whether
        or not reject_unmeetable is on: the same rule as `admit`, not a second one."""
        with self._lock:
            try:
                self._admit(budget, self.clock() if now is None else now, announced=False)
            except DeadlineUnmeetableError:
                return False
        return True

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """Announce a request on its way to `submit` (being read and decoded) for as long as the block runs.

        While requests are on their way, a batch with room waits for them (max-wait at most). Pass the
        yielded token to `submit`; a request that never gets there is withdrawn when the block ends.
        """
        arrival = Arrival()
        with self._lock:
            self._arriving += 1
        try:
            yield arrival
        finally:
            if not arrival.arrived:
                with self._lock:
                    self._arriving -= 1
                    wake, self._sleeping = self._sleeping, False
                if wake:  # the batcher may be waiting for this one
                    self._wakeup.set()

    def submit(self, job: Job, arrival: Arrival | None = None) -> None:
        """Queue `job`; its future gets an `Answer` or an exception. Raises QueueFullError or UnavailableError.

        `arrival`: the token of the `arriving()` block this request was announced in, if any.
        """
        if isinstance(job.future, asyncio.Future):
            self.sink.open_channel(job.future.get_loop())  # before the job can be answered
        with self._lock:
            if arrival is not None and not arrival.arrived:  # arrived, even if refused below
                arrival.arrived = True
                self._arriving -= 1
            if self._closed:
                raise UnavailableError("the server is shutting down")
            if len(self._heap) >= self.config.queue_limit:
                raise QueueFullError(f"{len(self._heap)} requests are already waiting")
            if self.config.reject_unmeetable:
                self._admit(job.budget, job.received, announced=False)
            job.batch_mark = -1 if self._running else self._batches
            self._coming = (job.coming, job.budget.deadline)
            job.seq = next(self._seq)
            job.enqueued = self.clock()
            heapq.heappush(self._heap, job)
            # under the lock: the inference thread reports the depth too, and the last report must be the
            # last depth (reported after the lock, a 1 could land after the 0 of the pop that followed,
            # and the gauge would show a queue that is gone until the next request)
            self._observe("queued", len(self._heap))
            wake, self._sleeping = self._sleeping, False
        if wake:  # a busy inference thread looks at the queue when its batch is done
            self._wakeup.set()

    def cancel(self, job: Job) -> None:
        """The client went away (event loop): its future fails, so the inference thread skips it in the
        queue and drops it from its batch at the next exit."""
        future = job.future
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ClientGoneError("the client disconnected"))

    def feed_from(self, fd: int, drain: Callable[[], bool], deliver: Callable[[], None] | None = None) -> None:
        """Let the inference thread take in its own jobs: it calls `drain()` (which reads `fd` and calls
        `submit`) whenever `fd` is readable, while idle and between stages. Call before `start`. The
        inference process does this, so that a job reaches the model and its answer leaves without
        waking another thread. `drain` returns False once `fd` is done (closed, or told to stop).
        `deliver()` sends what the jobs' Replies hold: after each exit's answers, and at once for
        refusals and failures."""
        self._intake, self._intake_fd, self.sink.deliver = drain, fd, deliver
        self._intake_poll.register(fd, select.POLLIN)
        self._wakeup.watch(fd)

    def take_in(self, now: float = 0.0) -> float:
        """Inference thread, lock not held: take in the jobs waiting in the intake, if there is one.
        Returns `now`, or the clock after taking jobs in (that took time)."""
        if self._intake is None or not self._intake_poll.poll(0):
            return now
        if not self._intake():
            self._intake = None
            self._intake_poll.unregister(self._intake_fd)
            self._wakeup.unwatch(self._intake_fd)
        return self.clock()

    def front(self) -> FrontEnd:
        """The front end's costs around this engine (service.engine.front_costs), from the parent if it sends them."""
        return self.front_from_parent if self.front_from_parent is not None else self.front_costs.now()

    @property
    def handoff_s(self) -> float:
        """Kept before every deadline on top of the response margin: how long an answer takes from the
        engine to its response. A lone request's answer finds the event loop idle; under load it waits
        for the loop (a recent quantile), and never less than a lone one's."""
        return way_out_s(self.front(), 0, alone=self._arriving + len(self._heap) <= 1)

    def _out_of(self, job: Job) -> float:
        return self.handoff_s if job.out_s is None else job.out_s

    def margin_of(self, job: Job) -> float:
        """Room kept before `job`'s deadline when going deeper: the response margin and its way out."""
        return self.config.margin_s + self._out_of(job)

    @property
    def margin_s(self) -> float:
        """Room kept before a deadline when going deeper: the response margin and the recent hand-off."""
        return self.config.margin_s + self.handoff_s

    def admit(self, budget: Budget, received: float, in_front: int | None = None, crowded: bool = False) -> None:
        """Raise if a request received at `received` with `budget` would be refused now (see `_admit`).

        The HTTP layer asks this before it decodes the image, so that a refusal under overload costs
        little; `submit` decides again, atomically with queueing. Does nothing without reject_unmeetable.
        `in_front`: other requests the front end has begun and not submitted (default: those announced);
        `crowded`: others were read before it since its first byte (service.engine.admission.Ahead).
        """
        if self.config.reject_unmeetable:
            with self._lock:
                self._admit(budget, received, in_front=in_front, crowded=crowded)

    def _admit(
        self,
        budget: Budget,
        received: float,
        announced: bool = True,
        in_front: int | None = None,
        crowded: bool = False,
    ) -> None:
        """Lock held: refuse a request whose first exit is predicted late (service.engine.admission: 422 below what
        an idle server can do, 503 when work ahead is the cause). `announced`: the request is still
        counted in `arriving()` (asked before decoding), so it is not one of the others in the front end.

        Counted ahead: the requests queued before it (EDF), at exit 0 only, in batches of
        max_batch_size, after the stage running now (its predicted end): a running batch goes no deeper
        than the queue allows (`queue_allows`), but a stage is not interrupted. An idle refresh pass
        is not counted: it stops between stages for any request.
        """
        if budget.deadline is None:
            return
        now = self.clock()
        running = max(0.0, self._executor.busy_until - now) if self._running else 0.0
        queued = sum(1 for job in self._heap if job.budget.urgency <= budget.deadline)
        others = max(0, self._arriving - (1 if announced else 0)) if in_front is None else in_front
        idle = not self._running and not self._heap and now - self._idle_since >= self.config.cold_after_s
        ahead = Ahead(queued, running, others, len(self._heap) - queued + (1 if self._running else 0), idle, crowded)
        cfg = self.config
        check(self.profile, cfg.quantile, cfg.max_batch_size, budget, received, now, ahead, self.front())

    def swap_model(self, runner: Any, profile: LatencyProfile, timeout: float | None = None) -> bool:
        """Serve `runner` with `profile` from the next batch on (hot reload; blocking).

        The inference thread switches between two batches, so a batch never mixes models; jobs already
        queued run on the new model (their tensors must fit it: same input size and normalisation).
        Returns whether the switch happened within `timeout`.
        """
        done = threading.Event()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # not serving: nothing to race with
                self.runner, self.profile = runner, profile
                return True
            self._swap = (runner, profile, done)
        self._wakeup.set()
        if done.wait(timeout):
            return True
        with self._lock:  # timed out: withdraw the request unless the thread took it just now
            if self._swap is not None and self._swap[2] is done:
                self._swap = None
                return False
        return True

    def _apply_swap(self) -> None:
        """Inference thread, lock held, between batches: take a pending swap_model."""
        if self._swap is not None:
            self.runner, self.profile, done = self._swap
            self._swap = None
            done.set()

    placement = None  # the process engine pins CPUs (service.worker.cpu_placement); a thread engine does not

    @property
    def ready_detail(self) -> str | None:
        """Why not ready while healing: a thread engine has no process to restart."""
        return None

    @property
    def unavailable_detail(self) -> str | None:
        return None

    @property
    def health_detail(self) -> str | None:
        """Why the server is not alive: this engine failed for good."""
        return None if self.error is None else f"the engine failed: {self.error}"

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop accepting, answer everything already queued, then end the thread (blocking).

        Jobs still queued after `timeout` seconds are failed with UnavailableError rather than left hanging.
        """
        with self._lock:
            self._closed = True
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            leftover, self._heap = self._heap, []
        if self._thread is None or not self._thread.is_alive():
            self._wakeup.close()
        for job in leftover:
            self.sink.settle(job.future, error=UnavailableError("the server shut down before this request ran"))
        self.sink.close()

    # -- inference thread --------------------------------------------------------------------------

    def _main(self, calibrate_first: bool) -> None:
        try:
            if calibrate_first:
                started = time.perf_counter()
                calibrate(self.profile, self.runner.time_pass, self.config.warmup_runs, self.config.calibration_runs,
                          idle=time.sleep)  # fmt: skip
                log.info("latency profile calibrated in %.2fs", time.perf_counter() - started)
            self._idle_since = self.clock()
            self.ready.set()
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        except BaseException as err:  # a dead inference thread must not leave requests waiting forever
            self.error = err
            log.exception("inference thread failed")
            with self._lock:
                self._closed = True
                leftover, self._heap = self._heap, []
            for job in leftover:
                self.sink.settle(job.future, error=UnavailableError(f"inference thread failed: {err}"))

    def _next_batch(self) -> list[Job] | None:
        """Wait for work, then gather up to max_batch_size jobs by EDF; None once closed and drained.

        With fewer than max_batch_size queued, the batcher waits for more only while requests are on
        their way (`arriving`), at most max_wait, and never longer than the most urgent job can spare
        without losing an exit (see `policy.affordable_wait`).
        """
        self.take_in()  # what came in while the last batch ran joins this one
        with self._lock:
            while not self._heap:
                self._apply_swap()
                if self._closed:
                    return None
                # idle that long: guardrail re-runs first while any are due, else keep the profile current
                rerun = self.guardrail is not None and self.guardrail.pending
                if not self._sleep(idle_wait_s(self.config.idle_refresh_s, self.guardrail, rerun)):
                    self._lock.release()
                    try:
                        self._idle_work(rerun)
                    finally:
                        self._lock.acquire()
            self._apply_swap()
            cfg, profile = self.config, self.profile
            window_end = self.clock() + cfg.max_wait_s
            while len(self._heap) < cfg.max_batch_size and self._arriving > 0 and not self._closed:
                now = self.clock()
                size = min(len(self._heap) + 1, cfg.max_batch_size)
                stage_s = [profile.predict_stage(k, size, cfg.quantile) for k in range(profile.num_exits)]
                head_s = [profile.predict_head(k, size, cfg.quantile) for k in range(profile.num_exits)]
                spare = affordable_wait(self._heap[0].budget, now, stage_s, head_s, self.margin_of(self._heap[0]))
                timeout = min(window_end - now, spare)
                if timeout <= 0 or not self._sleep(timeout):
                    break
            batch = []
            while self._heap and len(batch) < cfg.max_batch_size:
                job = heapq.heappop(self._heap)
                if not job.future.done():  # the client may have gone away
                    batch.append(job)
            self._observe("queued", len(self._heap))  # under the lock, as in submit
        return batch

    def _sleep(self, timeout: float | None) -> bool:
        """Inference thread, lock held: sleep until woken (True) or `timeout` passes (False), lock held again."""
        self._sleeping = True
        self._lock.release()
        try:
            woken = self._wakeup.wait(timeout)
            if woken:
                self.take_in()
            return woken
        finally:
            self._lock.acquire()
            self._sleeping = False

    def _run(self, batch: list[Job]) -> None:
        cold = self.clock() - self._idle_since >= self.config.cold_after_s
        fresh_mark, self._batches = self._batches, self._batches + 1
        try:
            self._running = True
            self._executor.run(batch, self.runner, self.profile, self.guardrail, cold, fresh_mark)
        finally:
            self._running = False
            self._idle_since = self.clock()

    def _interrupted(self) -> bool:
        """Inference thread, idle work between two stages: take in what came, and say whether to stop (a
        request is queued, or a reload or shutdown is pending). Unlocked reads: a hint is enough."""
        self.take_in()
        return bool(self._heap) or self._closed or self._swap is not None

    def _idle_work(self, rerun: bool) -> None:
        """Inference thread, lock not held, idle: guardrail re-runs while any are due, else a profile refresh
        (service.engine.idle_work). The idle timer starts again after either."""
        try:
            if rerun:
                assert self.guardrail is not None
                rerun_guardrail(self.guardrail, self.runner, self._observe, self._interrupted)
            else:
                refresh_profile(self.runner, self.profile, self._interrupted)
        finally:
            self._idle_since = self.clock()

    def queue_allows(self, now: float, step_s: float) -> bool:
        """Whether the running batch may take `step_s` more without costing the most urgent queued request
        its first exit (the next batch: the queue's head and up to max_batch_size - 1 behind it). Requests
        the front end announced as still being read (a burst arrives here one at a time) count as
        queued, with the deadline of the job that announced them."""
        with self._lock:
            coming, coming_deadline = self._coming
            if coming and (coming_deadline is None or coming_deadline < now):
                coming = 0  # no deadline to keep, or too late for this to matter: nothing to wait for
            if coming >= self.config.max_batch_size:  # more on their way than a batch holds: breadth first
                return False
            if self._heap:
                head = self._heap[0]
                deadline, margin = head.budget.deadline, self.margin_of(head)
            elif coming:  # a burst the front end is still reading: taken to share the announcer's deadline
                deadline, margin = coming_deadline, self.margin_s
            else:
                return True
            waiting = min(len(self._heap) + coming, self.config.max_batch_size)
        first_s = self.profile.predict(0, waiting, self.config.quantile)
        return queue_allows(now, step_s, deadline, first_s, margin)

    def _observe(self, hook: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, hook)(*args)
        except Exception:  # a metric must never fail a request
            log.warning("observer hook %s failed", hook, exc_info=True)
