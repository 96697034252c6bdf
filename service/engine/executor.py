"""Runs one batch in the inference thread, stage by stage, and decides after every stage who stops.

After each stage the policy decides per request whether the next stage still fits; the exit head is read
only for the requests that may stop there (those that must, and those whose confidence target may stop
them), and skipped when there are none. Those that stop are answered at once (service.engine.answer_sink:
one wake-up per exit) and leave the batch; the rest go on with a smaller batch. Exit 0 always answers a
request that cannot go on. A streamed request (`Job.progress`) has its head read at every exit, and what it
would have answered there goes to its sink when it goes on. Going deeper never costs a queued request its
first exit (`QueueView.queue_allows`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from elastic_anytime.service.engine.admission import BacklogError, FrontEnd, way_out_s
from elastic_anytime.service.engine.answer_sink import AnswerSink
from elastic_anytime.service.engine.guardrail import Guardrail
from elastic_anytime.service.engine.policy import Reason, decide, first_exit_fits, needs_exit
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import Answer, EngineConfig, InferenceError, Job

log = logging.getLogger(__name__)


class QueueView(Protocol):
    """What the executor needs from the queue around it (service.engine.scheduler.Engine)."""

    def take_in(self, now: float = 0.0) -> float: ...
    def queue_allows(self, now: float, step_s: float) -> bool: ...
    def margin_of(self, job: Job) -> float: ...
    def front(self) -> FrontEnd: ...


class BatchExecutor:
    def __init__(
        self,
        config: EngineConfig,
        clock: Callable[[], float],
        sink: AnswerSink,
        queue: QueueView,
        observe: Callable[..., None],
    ) -> None:
        self.config, self.clock, self.sink, self.queue, self.observe = config, clock, sink, queue, observe
        # when the stage running now is predicted to end (0: none running); written by the inference thread
        # alone, read by admission: a request arriving mid-stage waits for the rest of it
        self.busy_until = 0.0
        self.cold = False  # the batch running now started cold
        self.runner: Any = None  # the batch's: a hot swap happens between two batches
        self.profile: LatencyProfile | None = None
        self.guardrail: Guardrail | None = None

    def run(
        self, batch: list[Job], runner: Any, profile: LatencyProfile, guardrail: Guardrail | None, cold: bool,
        fresh_mark: int,
    ) -> None:  # fmt: skip
        """Run `batch` to its last answer. `fresh_mark`: the mark of jobs queued on an idle engine for this
        very batch (they waited for no other work, so they are never refused here)."""
        self.runner, self.profile, self.guardrail, self.cold = runner, profile, guardrail, cold
        cfg = self.config
        start = self.clock()
        for job in batch:
            self.observe("queue_wait", start - job.enqueued)
        if cfg.reject_unmeetable:  # as on arrival: a request that waited behind other work too long is refused
            batch = self._refuse_late(batch, start, fresh_mark)
        if not batch:
            return
        self.observe("batch", len(batch), len({job.source for job in batch}))
        active = batch
        try:
            t0 = self._step_starts(0, len(active))
            features = runner.batch([job.tensor for job in active])  # timed with stage 0, as calibrated
            for k in range(runner.num_exits):
                features = runner.stage(k, features)
                ended = self.clock()
                now = self.queue.take_in(ended)  # before deciding who goes on: the queue's deadlines count
                profile.observe(k, len(active), now - t0, None, cold)  # taking jobs in is part of the step's time
                gone = [row for row, job in enumerate(active) if job.future.done()]
                if gone:  # their clients went away: they leave the batch unanswered
                    keep = [row for row in range(len(active)) if row not in gone]
                    if not keep:
                        return
                    features = runner.select(features, keep)
                    active = [active[row] for row in keep]
                keep, head_s = self._exit(k, active, features, now, start)
                self.observe("stage", k, len(active), ended - t0 + head_s)
                if keep:  # sending this exit's answers and selecting the rows are timed with the next stage
                    t0 = self._step_starts(k + 1, len(keep))
                self.sink.flush()  # the answers of this exit go out before the next stage runs
                if not keep:
                    return
                if len(keep) < len(active):
                    features = runner.select(features, keep)
                    active = [active[row] for row in keep]
        except Exception as err:
            log.exception("inference failed on a batch of %d", len(active))
            self.sink.flush()
            for job in active:
                self.sink.settle(job.future, error=InferenceError(f"inference failed: {err}"))
        finally:
            self.busy_until = 0.0

    def _refuse_late(self, batch: list[Job], start: float, fresh_mark: int) -> list[Job]:
        """Refuse the jobs that waited behind other work until their first exit no longer fits; the rest run.

        Typical figures, not the tail: a job refused here has waited already, so a refusal reaches its
        client as late as a late answer would; it is refused only when its first exit is more likely late
        than not. A job that waited for nothing (queued on an idle engine for this batch) is served."""
        assert self.profile is not None
        first_s = self.profile.predict(0, len(batch), "p50", self.cold)
        front = self.queue.front()
        late = [
            j for j in batch
            if j.batch_mark != fresh_mark and not first_exit_fits(j.budget, start, first_s, way_out_s(front, j.coming))
        ]  # fmt: skip
        for job in late:
            waited = 1e3 * (start - job.enqueued)
            error = BacklogError(
                f"it waited {waited:.1f} ms in the queue behind other requests; its first exit no longer fits"
            )
            self.sink.settle(job.future, error=error)
        return [j for j in batch if j not in late]

    def _step_starts(self, k: int, batch_size: int) -> float:
        """Stage k (and head k) starts now for `batch_size` rows; admission counts the rest of it as time that
        a request arriving meanwhile waits anyway. Returns the start time."""
        assert self.profile is not None
        now = self.clock()
        # its typical time (p50): admission adds the newcomer's own exit 0 at the profile's quantile (p99),
        # and two p99s added up are far beyond the p99 of the sum (A/B in docs/performance.md)
        self.busy_until = now + self.profile.predict(k, batch_size, "p50", self.cold)
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
        predicted = profile.predict(k + 1, going_on, quantile, self.cold) if going_on and not last else 0.0
        queue_ok = not going_on or self.queue.queue_allows(now, predicted)
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
                        self.sink.progress(job, self._record(job, k, class_id[i], confidence[i], reason, top, start))
                    job.heads_mflops = spent
                    continue
            top = runner.top_k(probs, i, job.top_k) if job.top_k else None
            self._answer(job, k, class_id[i], confidence[i], reason, top, start)
            stopped.add(row)
        profile.observe_head(k, len(need), self.clock() - entered, self.cold)
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
            predicted = profile.predict(k + 1, len(going_on), quantile, self.cold)
            if reading:
                predicted += profile.predict_head(k, reading, quantile, self.cold)
            if not self.queue.queue_allows(now, predicted):
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

    def _decide(
        self, k: int, job: Job, confidence: float | None, now: float, predicted_next_s: float, next_mflops: float
    ) -> Reason:
        margin_s = self.queue.margin_of(job)
        return decide(k, self.runner.num_exits, confidence, job.budget, now, predicted_next_s, next_mflops, margin_s)

    def _answer(
        self, job: Job, exit_index: int, class_id: int, confidence: float, reason: Reason, top: Any, started: float
    ) -> None:
        answer = self._record(job, exit_index, class_id, confidence, reason, top, started)
        self.sink.settle(job.future, answer=answer, at_once=False)  # out with the rest of this exit
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
