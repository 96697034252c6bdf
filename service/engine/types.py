"""What the engine and its users share: the errors it answers with, a job and its answer, the config, the
observer of what happens, and `EngineApi`, the one interface of the engine in a thread (`Engine`), in an
engine process (`service.worker.client.EngineProcess`) and over several of those (`EngineGroup`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.profile import LatencyProfile


class QueueFullError(RuntimeError):
    """Admission control: too many requests waiting."""


class UnavailableError(RuntimeError):
    """The engine is not serving (warming up, shutting down or stopped)."""


class InferenceError(RuntimeError):
    """The model failed on a batch."""


class ClientGoneError(RuntimeError):
    """The client disconnected before its answer: the request left the queue or its batch unanswered."""


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
    runner: Any = None  # the runner that answered: labels come from it even if a reload swapped the model since
    enqueued_at: float = 0.0  # when the engine queued it (its clock): the front end times its way in with this


@dataclass
class Arrival:
    """A request announced as on its way to the engine (see `Engine.arriving`)."""

    arrived: bool = False


class Reply(Protocol):
    """Where a job's answer goes instead of an asyncio future: settled by the engine in its own thread
    (the inference process sends it up its pipe from there, without waking another thread). It may
    hold the answer until the engine calls the `deliver` given to `Engine.feed_from`: all answers of an
    exit are stamped first, then sent."""

    def done(self) -> bool: ...
    def settle(self, answer: Answer | None, error: BaseException | None) -> None: ...


@dataclass(eq=False)
class Job:
    """One request inside the engine. `received` is on the engine's clock; the deadline derives from it."""

    tensor: Any
    budget: Budget
    received: float
    future: asyncio.Future | Reply
    top_k: int | None = None
    seq: int = 0
    enqueued: float = 0.0
    heads_mflops: float = 0.0  # earlier exit heads read on this request's row (it went on after them)
    batch_mark: int = -1  # the engine's batch count when it was queued while idle; -1: a batch was running
    wire_id: int | None = None  # the process engine's id for it (service.worker.client)
    # how long its answer will take from its exit to its response, as the front end planned it when it was
    # submitted (service.engine.admission.way_out_s); None: the engine's own estimate (`handoff_s`)
    out_s: float | None = None
    coming: int = 0  # requests the front end was still reading when it submitted this one (a burst)
    # streamed requests only: gets what each exit it goes on from would have answered (an Answer with reason
    # CONTINUE), on the future's event loop; with a Reply, in the inference thread. None: not streamed
    progress: Callable[[Answer], None] | None = None
    source: int = 0  # which front end sent it, where several share the engine (service.worker.host)

    def __lt__(self, other: Job) -> bool:  # heap order: earliest deadline, then arrival
        return (self.budget.urgency, self.seq) < (other.budget.urgency, other.seq)


class Observer(Protocol):
    """Where the engine reports what happened (metrics). Failures here are logged and ignored. Answers are
    counted by the request handler, with the same figures its response carries."""

    def stage(self, index: int, batch_size: int, seconds: float) -> None: ...
    # `sources`: the front ends whose requests share the batch (service.worker.host; 1 in one process)
    def batch(self, size: int, sources: int = 1) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def queued(self, depth: int) -> None: ...
    # the guardrail (service.engine.guardrail): a re-run early answer agreed with the final exit or not, and the
    # checkpoint's calibrated agreement for a sample drawn that way (None: no baseline)
    def agreement(self, exit_index: int, agree: bool, expected: float | None) -> None: ...


@dataclass
class EngineConfig:
    max_batch_size: int = 8
    max_wait_s: float = 0.002
    queue_limit: int = 256
    margin_s: float = 0.0005
    quantile: str = "p99"
    handoff_quantile: str | None = "p50"  # see `Engine.handoff_s`; None: keep no room for the hand-off
    reject_unmeetable: bool = False
    warmup_runs: int = 3
    calibration_runs: int = 20
    # a batch that starts after the inference thread sat idle this long is timed and predicted cold
    # (service.engine.profile): here any idle gap from 0.5 ms up made the next pass about 1.7x slower
    cold_after_s: float = 0.001
    # Idle this long, the inference thread times one batch-1 pass into the profile, exit by exit, and stops
    # as soon as work arrives (a request waits at most one stage for it). Without it, a profile inflated
    # by a stall during calibration could refuse every tight budget for good: refused requests never run,
    # so they never correct it. None: off.
    idle_refresh_s: float | None = None
    # The event loop and the inference thread share the GIL. A thread waiting for it gets it only when
    # the holder blocks or after Python's switch interval (5 ms by default): torch ops release the GIL,
    # but the holder usually takes it back before the waiter wakes. Measured here: submits, answers
    # and batch starts held up for milliseconds. A shorter interval bounds that; None leaves Python's.
    # 0.1 ms rather than 0.5: a stage makes a few dozen torch calls, each of which can wait up to one
    # interval for the GIL while the event loop parses requests; measured here at 370 requests/s with
    # 8 ms budgets, late answers fell from 6% to about 1%, with the same saturation throughput.
    gil_switch_interval_s: float | None = 0.0001


@runtime_checkable
class EngineApi(Protocol):
    """What the HTTP front end uses of an engine, wherever it runs. The health details are None while all is well."""

    clock: Callable[[], float]
    front_costs: FrontEndCosts
    error: BaseException | None
    placement: Any  # the CPUs it is pinned to (service.worker.cpu_placement), or None

    @property
    def profile(self) -> LatencyProfile: ...
    @property
    def accepting(self) -> bool: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def handoff_s(self) -> float: ...
    @property
    def ready_detail(self) -> str | None: ...  # why not ready while it heals (readiness)
    @property
    def unavailable_detail(self) -> str | None: ...  # why a request is refused while it heals
    @property
    def health_detail(self) -> str | None: ...  # why not alive (liveness)
    def front(self) -> Any: ...
    def arriving(self) -> contextlib.AbstractContextManager[Arrival]: ...
    def admit(self, budget: Budget, received: float, in_front: int | None = None, crowded: bool = False) -> None: ...
    def submit(self, job: Job, arrival: Arrival | None = None) -> None: ...
    def cancel(self, job: Job) -> None: ...
    def start(self) -> None: ...
    def stop(self, timeout: float | None = 30.0) -> None: ...
