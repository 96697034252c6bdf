"""The anytime engine: an earliest-deadline-first queue, a batcher, and a stage-by-stage executor
in one dedicated inference thread (the event loop never runs the model).

A batch runs stage by stage. After every stage the policy decides per request whether the next
stage still fits; the exit head is read only for the requests that may stop there (those that must,
and those whose confidence target may stop them), and skipped when there are none. Those that stop
are answered at once (their asyncio future resolved on its loop through a `LoopChannel`, one wake-up
per exit) and leave the batch, the rest go on with a smaller batch. Exit 0 always answers a request
that cannot go on. A streamed request (`Job.progress`) has its head read at every exit, and what it
would have answered there goes to its sink when it goes on.

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
import math
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elastic_anytime.service.engine.admission import (
    Ahead,
    BacklogError,
    DeadlineUnmeetableError,
    FrontEnd,
    check,
    way_out_s,
)
from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.engine.guardrail import Guardrail
from elastic_anytime.service.engine.handoff import LoopChannel
from elastic_anytime.service.engine.policy import (
    Budget,
    Reason,
    affordable_wait,
    decide,
    first_exit_fits,
    needs_exit,
    queue_allows,
)
from elastic_anytime.service.engine.profile import QUANTILES, LatencyProfile, calibrate
from elastic_anytime.service.engine.types import (
    Answer,
    Arrival,
    ClientGoneError,
    EngineConfig,
    InferenceError,
    Job,
    Observer,
    QueueFullError,
    Reply,
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
        # when the stage the inference thread runs now is predicted to end (0: none running); written by
        # that thread alone, read by admission: a request arriving mid-stage waits for the rest of it
        self._busy_until = 0.0
        self._channels: dict[asyncio.AbstractEventLoop, LoopChannel] = {}  # where answers go, per event loop
        self._unwoken: set[LoopChannel] = set()  # inference thread: answers posted, loop not woken yet
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
        self._cold = False  # inference thread: the batch running now started cold
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._intake: Callable[[], bool] | None = None  # see feed_from
        self._deliver: Callable[[], None] | None = None
        self._undelivered = False  # inference thread: replies settled, `_deliver` not called since
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
            self._open_channel(job.future.get_loop())  # before the job can be answered
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
        self._intake, self._intake_fd, self._deliver = drain, fd, deliver
        self._intake_poll.register(fd, select.POLLIN)
        self._wakeup.watch(fd)

    def _take_in(self, now: float = 0.0) -> float:
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

    def _margin_of(self, job: Job) -> float:
        """Room kept before `job`'s deadline when going deeper: the response margin and its way out."""
        return self.config.margin_s + self._out_of(job)

    @property
    def margin_s(self) -> float:
        """Room kept before a deadline when going deeper: the response margin and the recent hand-off."""
        return self.config.margin_s + self.handoff_s

    def admit(self, budget: Budget, received: float, in_front: int | None = None) -> None:
        """Raise if a request received at `received` with `budget` would be refused now (see `_admit`).

        The HTTP layer asks this before it decodes the image, so that a refusal under overload costs
        little; `submit` decides again, atomically with queueing. Does nothing without reject_unmeetable.
        `in_front`: other requests the front end has begun and not submitted (default: those announced).
        """
        if self.config.reject_unmeetable:
            with self._lock:
                self._admit(budget, received, in_front=in_front)

    def _admit(self, budget: Budget, received: float, announced: bool = True, in_front: int | None = None) -> None:
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
        running = max(0.0, self._busy_until - now) if self._running else 0.0
        queued = sum(1 for job in self._heap if job.budget.urgency <= budget.deadline)
        others = max(0, self._arriving - (1 if announced else 0)) if in_front is None else in_front
        idle = not self._running and not self._heap and now - self._idle_since >= self.config.cold_after_s
        ahead = Ahead(queued, running, others, len(self._heap) - queued + (1 if self._running else 0), idle)
        cfg = self.config
        check(self.profile, cfg.quantile, cfg.max_batch_size, budget, received, now, ahead, self.front())

    def _open_channel(self, loop: asyncio.AbstractEventLoop) -> None:
        """The answer channel to `loop`, opened from that loop's own thread (else answers fall back to
        call_soon_threadsafe)."""
        channel = self._channels.get(loop)
        if channel is not None and not channel.closed:
            return
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                self._channels[loop] = LoopChannel(loop)

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
            self._settle(job.future, error=UnavailableError("the server shut down before this request ran"))
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:  # each closes on its own loop, after running what is still queued
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                channel.loop.call_soon_threadsafe(channel.close)

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
                self._settle(job.future, error=UnavailableError(f"inference thread failed: {err}"))

    def _next_batch(self) -> list[Job] | None:
        """Wait for work, then gather up to max_batch_size jobs by EDF; None once closed and drained.

        With fewer than max_batch_size queued, the batcher waits for more only while requests are on
        their way (`arriving`), at most max_wait, and never longer than the most urgent job can spare
        without losing an exit (see `policy.affordable_wait`).
        """
        self._take_in()  # what came in while the last batch ran joins this one
        with self._lock:
            while not self._heap:
                self._apply_swap()
                if self._closed:
                    return None
                # idle that long: guardrail re-runs first while any are due, else keep the profile current
                rerun = self.guardrail is not None and self.guardrail.pending
                if not self._sleep(self._idle_wait(rerun)):
                    self._lock.release()
                    try:
                        self._rerun() if rerun else self._refresh_profile()
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
                spare = affordable_wait(self._heap[0].budget, now, stage_s, head_s, self._margin_of(self._heap[0]))
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

    def _refresh_profile(self) -> None:
        """Inference thread, lock not held, idle: two batch-1 passes into the profile, the first into its
        cold cells (it follows an idle spell, as a lone request does) and the second, right after it,
        into the warm ones; stopping between exits as soon as a request is queued (or a reload or
        shutdown is pending). Refused requests never run, so without this a stall could stay in the
        profile for good. Admission does not count these passes as work ahead: they yield at once."""
        try:
            for cold in (True, False):
                steps = self.runner.time_steps(1)
                try:
                    for k in range(self.runner.num_exits):
                        stage_s, head_s = next(steps)
                        self.profile.observe(k, 1, stage_s, head_s, cold)
                        self._take_in()
                        if self._heap or self._closed or self._swap is not None:  # unlocked reads: a hint is enough
                            return
                finally:
                    steps.close()
        finally:
            self._idle_since = self.clock()

    def _idle_wait(self, rerun: bool) -> float | None:
        """How long the idle inference thread sleeps before a guardrail re-run (`rerun`) or a profile refresh."""
        refresh = self.config.idle_refresh_s
        if not rerun:
            return refresh
        assert self.guardrail is not None
        return self.guardrail.idle_s if refresh is None else min(self.guardrail.idle_s, refresh)

    def _rerun(self) -> None:
        """Inference thread, lock not held, idle: guardrail re-runs (service.engine.guardrail), one stage at a time at
        batch 1, until none is due or a request is queued (it waits one stage at most; the interrupted re-run
        resumes at its next stage when the engine is idle again). Their stages are not timed into the
        profile: its cold cells hold passes after an idle spell as a lone request meets them, and these run
        after a few milliseconds. The profile refresh waits until no re-run is due, and its idle timer
        starts after them."""
        assert self.guardrail is not None
        try:
            while self.guardrail.pending:
                verdict = self.guardrail.step(self.runner)
                if verdict is not None:
                    self._observe("agreement", verdict.exit_index, verdict.agree, verdict.expected)
                self._take_in()
                if self._heap or self._closed or self._swap is not None:  # unlocked reads: a hint is enough
                    return
        finally:
            self._idle_since = self.clock()

    def _sleep(self, timeout: float | None) -> bool:
        """Inference thread, lock held: sleep until woken (True) or `timeout` passes (False), lock held again."""
        self._sleeping = True
        self._lock.release()
        try:
            woken = self._wakeup.wait(timeout)
            if woken:
                self._take_in()
            return woken
        finally:
            self._lock.acquire()
            self._sleeping = False

    def _run(self, batch: list[Job]) -> None:
        try:
            self._running = True
            self._run_batch(batch)
        finally:
            self._running = False
            self._idle_since = self.clock()

    def _run_batch(self, batch: list[Job]) -> None:
        cfg, runner, profile = self.config, self.runner, self.profile
        start = self.clock()
        cold = self._cold = start - self._idle_since >= cfg.cold_after_s
        for job in batch:
            self._observe("queue_wait", start - job.enqueued)
        if cfg.reject_unmeetable:  # as on arrival: a request that waited behind other work too long is refused
            # its typical figures, not the tail: it has waited already, so a refusal now reaches its client as
            # late as a late answer would; it is refused only when its first exit is more likely late than not
            first_s = self.profile.predict(0, len(batch), "p50", cold)
            front = self.front()
            # only a job that waited for other work (a batch ran meanwhile): one that waited for nothing is served
            late = [
                j for j in batch
                if j.batch_mark != self._batches
                and not first_exit_fits(j.budget, start, first_s, way_out_s(front, j.coming))
            ]  # fmt: skip
            for job in late:
                waited = 1e3 * (start - job.enqueued)
                error = BacklogError(
                    f"it waited {waited:.1f} ms in the queue behind other requests; its first exit no longer fits"
                )
                self._settle(job.future, error=error)
            batch = [j for j in batch if j not in late]
        self._batches += 1
        if not batch:
            return
        self._observe("batch", len(batch), len({job.source for job in batch}))
        active = batch
        try:
            t0 = self._step_starts(0, len(active))
            features = runner.batch([job.tensor for job in active])  # timed with stage 0, as calibrated
            for k in range(runner.num_exits):
                features = runner.stage(k, features)
                ended = self.clock()
                now = self._take_in(ended)  # before deciding who goes on: the queue's deadlines count
                profile.observe(k, len(active), now - t0, None, cold)  # taking jobs in is part of the step's time
                gone = [row for row, job in enumerate(active) if job.future.done()]
                if gone:  # their clients went away: they leave the batch unanswered
                    keep = [row for row in range(len(active)) if row not in gone]
                    if not keep:
                        return
                    features = runner.select(features, keep)
                    active = [active[row] for row in keep]
                keep, head_s = self._exit(k, active, features, now, start)
                self._observe("stage", k, len(active), ended - t0 + head_s)
                if keep:  # sending this exit's answers and selecting the rows are timed with the next stage
                    t0 = self._step_starts(k + 1, len(keep))
                self._wake_loops()  # the answers of this exit go out before the next stage runs
                if not keep:
                    return
                if len(keep) < len(active):
                    features = runner.select(features, keep)
                    active = [active[row] for row in keep]
        except Exception as err:
            log.exception("inference failed on a batch of %d", len(active))
            self._wake_loops()
            for job in active:
                self._settle(job.future, error=InferenceError(f"inference failed: {err}"))
        finally:
            self._busy_until = 0.0

    def _step_starts(self, k: int, batch_size: int) -> float:
        """Inference thread: stage k (and head k) starts now for `batch_size` rows; admission counts the
        rest of it as time that a request arriving meanwhile waits anyway. Returns the start time."""
        now = self.clock()
        # its typical time (p50): admission adds the newcomer's own exit 0 at the profile's quantile (p99),
        # and two p99s added up are far beyond the p99 of the sum (A/B in docs/performance.md)
        self._busy_until = now + self.profile.predict(k, batch_size, "p50", self._cold)
        return now

    def _exit(self, k: int, active: list[Job], features: Any, now: float, start: float) -> tuple[list[int], float]:
        """Exit k after its stage ran: read the head for the requests that may stop here, answer those
        that stop, and return (the rows that go on, seconds spent reading the head).

        The profile's head time is the whole exit, from `now` to the last answer made: the decisions,
        the read and the answers. An answer is stamped at its end, so predicting the read alone left
        exit 0 at the tightest budgets a little late, and too often (docs/performance.md)."""
        runner, profile, quantile = self.runner, self.profile, self.config.quantile
        last = k + 1 >= runner.num_exits
        next_direct = math.inf if last else runner.direct_mflops[k + 1]
        # before the head: everything but confidence, and nothing predicted yet (final, compute, too late now)
        reasons = [self._decide(k, job, None, now, 0.0, next_direct + job.heads_mflops) for job in active]
        if not last:
            self._time_check(k, active, reasons, now, next_direct)
        need = [row for row, job in enumerate(active) if needs_exit(reasons[row], job.budget, job.progress is not None)]
        if not need:  # nobody can stop here: skip the head
            return list(range(len(active))), 0.0

        entered, t0 = now, self.clock()
        probs, confidence, class_id = runner.read_exit(k, features, None if len(need) == len(active) else need)
        now = self.clock()
        going_on = sum(r is Reason.CONTINUE for r in reasons)
        predicted = profile.predict(k + 1, going_on, quantile, self._cold) if going_on and not last else 0.0
        queue_ok = not going_on or self._queue_allows(now, predicted)
        stopped = set()
        for i, row in enumerate(need):
            job, reason = active[row], reasons[row]
            if reason is Reason.CONTINUE:  # read for its confidence: decide again, now with the head paid for
                spent = job.heads_mflops + runner.head_mflops[k]
                reason = self._decide(k, job, confidence[i], now, predicted, next_direct + spent)
                if reason is Reason.CONTINUE and not queue_ok:
                    reason = Reason.DEADLINE
                if reason is Reason.CONTINUE:
                    if job.progress is not None:  # streamed: what it would answer here goes out now
                        top = runner.top_k(probs, i, job.top_k) if job.top_k else None
                        self._progress(job, self._record(job, k, class_id[i], confidence[i], reason, top, start))
                    job.heads_mflops = spent
                    continue
            top = runner.top_k(probs, i, job.top_k) if job.top_k else None
            self._answer(job, k, class_id[i], confidence[i], reason, top, start)
            stopped.add(row)
        profile.observe_head(k, len(need), self.clock() - entered, self._cold)
        return [row for row in range(len(active)) if row not in stopped], now - t0

    def _time_check(self, k: int, active: list[Job], reasons: list[Reason], now: float, next_direct: float) -> None:
        """Stop (in `reasons`) the requests whose exit k+1 would come too late, or whose going on
        would cost a waiting request its first exit.

        The prediction uses the batch that really goes on (those stopping leave it) and, when head k
        is to be read for anyone, the time of that read, which the requests going on wait for too.
        Repeated until no more requests stop: each one that stops shrinks the batch but may add a read.
        """
        profile, quantile = self.profile, self.config.quantile
        while True:
            going_on = [row for row, r in enumerate(reasons) if r is Reason.CONTINUE]
            if not going_on:
                return
            reading = sum(
                needs_exit(r, job.budget, job.progress is not None) for r, job in zip(reasons, active, strict=True)
            )
            predicted = profile.predict(k + 1, len(going_on), quantile, self._cold)
            if reading:
                predicted += profile.predict_head(k, reading, quantile, self._cold)
            if not self._queue_allows(now, predicted):
                for row in going_on:
                    reasons[row] = Reason.DEADLINE
                return
            changed = False
            for row in going_on:
                job = active[row]
                reason = self._decide(k, job, None, now, predicted, next_direct + job.heads_mflops)
                if reason is not Reason.CONTINUE:
                    reasons[row] = reason
                    changed = True
            if not changed:
                return

    def _queue_allows(self, now: float, step_s: float) -> bool:
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
                deadline, margin = head.budget.deadline, self._margin_of(head)
            elif coming:  # a burst the front end is still reading: taken to share the announcer's deadline
                deadline, margin = coming_deadline, self.margin_s
            else:
                return True
            waiting = min(len(self._heap) + coming, self.config.max_batch_size)
        first_s = self.profile.predict(0, waiting, self.config.quantile)
        return queue_allows(now, step_s, deadline, first_s, margin)

    def _decide(
        self, k: int, job: Job, confidence: float | None, now: float, predicted_next_s: float, next_mflops: float
    ) -> Reason:
        return decide(
            k, self.runner.num_exits, confidence, job.budget, now, predicted_next_s, next_mflops, self._margin_of(job)
        )

    def _answer(
        self, job: Job, exit_index: int, class_id: int, confidence: float, reason: Reason, top: Any, started: float
    ) -> None:
        answer = self._record(job, exit_index, class_id, confidence, reason, top, started)
        channel = self._settle(job.future, answer=answer, wake=False)
        if channel is not None:
            self._unwoken.add(channel)
        if self.guardrail is not None:  # a share of early answers is kept for a re-run while idle
            self.guardrail.offer(self.runner, job.tensor, exit_index, class_id, reason, job.budget)

    def _record(
        self, job: Job, exit_index: int, class_id: int, confidence: float, reason: Reason, top: Any, started: float
    ) -> Answer:
        """What `job` gets from exit `exit_index` now: its answer, or (reason CONTINUE) a streamed partial one."""
        now = self.clock()
        deadline = job.budget.deadline
        return Answer(
            class_id=int(class_id),
            confidence=float(confidence),
            exit_index=exit_index,
            mflops=self.runner.direct_mflops[exit_index] + job.heads_mflops,
            latency_s=now - job.received,
            queue_s=max(0.0, started - job.enqueued),
            enqueued_at=job.enqueued,
            budget_met=deadline is None or now <= deadline,
            reason=reason,
            slack_s=None if deadline is None else deadline - now,
            top_k=top,
            runner=self.runner,
        )

    def _progress(self, job: Job, partial: Answer) -> None:
        """Inference thread: hand a streamed job's partial answer to its sink, without settling the job.
        It goes out with this exit's answers (`_wake_loops`), before the job's own answer."""
        future, sink = job.future, job.progress
        assert sink is not None
        if not isinstance(future, asyncio.Future):  # a Reply (the inference process): its sink sends it up
            sink(partial)
            if self._deliver is not None:
                self._undelivered = True
            return

        def forward() -> None:
            if not future.done():  # the client may have gone away meanwhile
                sink(partial)

        channel = self._post(future.get_loop(), forward, wake=False)
        if channel is not None:
            self._unwoken.add(channel)

    def _settle(
        self,
        future: asyncio.Future | Reply,
        answer: Answer | None = None,
        error: BaseException | None = None,
        wake: bool = True,
    ) -> LoopChannel | None:
        """Resolve `future` on its own loop (from any thread) unless it is already done. With `wake`
        False the loop is woken later (`_wake_loops`); returns the channel used, if any."""

        if not isinstance(future, asyncio.Future):  # a Reply: sent by `_deliver`, from this thread
            if not future.done():
                future.settle(answer, error)
                if self._deliver is not None:
                    if wake:
                        self._deliver()
                    else:
                        self._undelivered = True
            return None

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answer)

        return self._post(future.get_loop(), settle, wake)

    def _post(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], wake: bool) -> LoopChannel | None:
        """Run `callback` on `loop` (from any thread): through its channel, woken now or by `_wake_loops`
        (returns the channel), or else through call_soon_threadsafe (returns None)."""
        channel = self._channels.get(loop)
        if channel is None or channel.closed:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(callback)
            return None
        channel.post(callback)
        if wake:
            channel.wake()
        return channel

    def _wake_loops(self) -> None:
        """Inference thread: wake the loops of the answers posted since the last call, once each, and
        deliver the Replies settled since."""
        while self._unwoken:
            self._unwoken.pop().wake()
        if self._undelivered:
            self._undelivered = False
            self._deliver()  # type: ignore[misc]  # set whenever replies wait for it

    def _observe(self, hook: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, hook)(*args)
        except Exception:  # a metric must never fail a request
            log.warning("observer hook %s failed", hook, exc_info=True)
