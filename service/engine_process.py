"""The engine in an inference process of its own (`ELASTIC_ENGINE=process`).

Why: in one process the event loop and the inference thread share the GIL, and every torch call of
the model hands it over and takes it back. While the loop parses, decodes and answers other requests
the model waits at each call: under load its stages ran 2–6× slower than in-process, unevenly, which
no latency profile predicts (docs/performance.md, "GIL hand-offs, counted"). In a child process the
model has a GIL of its own; a request costs one pipe round trip.

The child runs the ordinary `Engine` (same batching, policy, admission and profile). Its inference
thread reads the jobs from the pipe itself (while idle, and between stages) and sends each answer up
the pipe as soon as it is made, so that a request wakes one thread in the child, not three. The
parent keeps an `EngineProcess` with the engine's interface: it sends jobs, resolves their futures
from the answers, replays the child's metric hooks into its own Prometheus metrics and the child's
latency observations into a mirror of the profile (for /v1/model and admission). Jobs go down as
JSON and raw tensor bytes (service.pipe_writer: the child unpickles nothing); answers and metric
events come back pickled by multiprocessing's Connection to the server, which only ever reads its
own child's pipe (never a checkpoint: the child loads that from safetensors).

Hot reload: the parent checks and calibrates the new checkpoint as usual (service.reload), then the
child loads and calibrates its own copy and switches between two batches. The parent holds a CPU copy
of the model for its metadata, preprocessing and those checks (service.state.build_service).

Self-healing: a child that exits once the engine has served (killed, out of memory, a CUDA error) is
replaced. The requests it held fail at once (503 + Retry-After); until the new child has loaded and
calibrated (a few seconds) the engine is not ready and says why (`ready_detail`, `unavailable_detail`);
the mirror of the profile is refilled from the new child's calibration. Restarts back off and count
towards liveness as service.restart_policy says: only 3 failed restarts within 60 s make the server
not alive (`health_detail`), so that an orchestrator replaces a pod that cannot heal. A first child that
never gets ready is a setup problem (checkpoint, device, memory) that a restart will not fix: the engine
fails for good, as before. Stopping (SIGTERM) restarts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import queue
import select
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from service.admission import Ahead, FrontEnd, check, way_out_s
from service.cpu_placement import Placement, pin_this_process
from service.engine import (
    Arrival,
    BacklogError,
    ClientGoneError,
    DeadlineUnmeetableError,
    EngineConfig,
    InferenceError,
    Job,
    QueueFullError,
    UnavailableError,
)
from service.front_costs import FrontEndCosts
from service.pipe_writer import PipeWriter, grow_pipe, read_message
from service.policy import Budget
from service.profile import QUANTILES, LatencyProfile
from service.restart_policy import RestartPolicy

log = logging.getLogger(__name__)

ERRORS = {cls.__name__: cls for cls in (BacklogError, DeadlineUnmeetableError, InferenceError, QueueFullError,
                                        UnavailableError)}  # fmt: skip


class EngineProcess:
    """The parent's side: the interface of `service.engine.Engine`, served by a child process."""

    def __init__(
        self,
        env: dict[str, str],
        profile: LatencyProfile,
        config: EngineConfig,
        observer: Any = None,
        placement: Placement | None = None,
    ):
        self.env = env  # ELASTIC_* settings for the child (Settings.to_env), which builds the same config
        self.profile = profile  # a mirror, fed by the child's observations
        self.config = config
        self.observer = observer
        self.placement = placement  # CPUs for this process and the child (service.cpu_placement); None: any
        self.clock = time.monotonic  # CLOCK_MONOTONIC: the same clock in both processes
        self.restart_policy = RestartPolicy(self.clock)  # back-off of restarts, and when the server is not alive
        # measured here by the request handlers, travels to the child with each job
        quantile = config.handoff_quantile
        self.front_costs = FrontEndCosts(None if quantile is None else QUANTILES[quantile], self.clock)
        self._idle_since = 0.0  # when the last answer left the child with nothing else sent (cold after that)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._pending: dict[int, asyncio.Future] = {}  # sent and not answered yet: queued or running in the child
        self._urgency: dict[int, float] = {}  # their deadlines (inf: none), for admission
        self._sinks: dict[int, Any] = {}  # the streamed ones' progress sinks (Job.progress), fed from "progress"
        self._arriving = 0  # requests being read and decoded
        self._ids = itertools.count()
        self._closed = False
        self._process: Any = None
        self._reader: Any = None  # the child's messages
        self._writer: PipeWriter | _NoChild | None = None  # to the child (_NoChild: while it restarts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = threading.Lock()
        self._reloaded = threading.Event()
        self._reload_error: str | None = None
        # self-healing (event loop, except where stop takes _spawn_lock from its thread)
        self._served = False  # a child has said ready: from then on a child that exits is replaced
        self._down: str | None = None  # how the last child ended while its replacement is due or warming up
        self._down_since = 0.0
        self._failure: str | None = None  # what the current child reported in a "failed" message
        self._standby: PipeWriter | None = None  # a replacement's job pipe, used from its "ready" on
        self._spawn_lock = threading.Lock()  # stop (a worker thread) against a restart (the event loop)

    # -- the Engine interface -------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the child (it loads, warms up and calibrates, then says ready). Call on the event loop."""
        self._loop = asyncio.get_running_loop()
        self._writer = self._spawn()
        if self.placement is not None:
            try:
                pin_this_process(self.placement.server)
            except OSError as err:  # CPUs this process may not use: serve unpinned rather than not at all
                log.warning("cannot pin the server to CPUs %s: %s", self.placement.describe()["server"], err)

    def _spawn(self) -> PipeWriter:
        """Start a child and listen to it; returns its job pipe. Event loop."""
        context = multiprocessing.get_context("spawn")
        # two one-way pipes: the server writes jobs with a PipeWriter (no thread hand-off while the pipe has room)
        child_inbox, to_child = context.Pipe(duplex=False)
        self._reader, child_outbox = context.Pipe(duplex=False)
        cpus = None if self.placement is None else sorted(self.placement.inference)
        process = context.Process(
            target=child_main, args=(child_inbox, child_outbox, self.env, cpus), name="elastic-inference", daemon=True
        )
        # the child inherits the environment; prometheus_client decides on multiprocess files when first
        # imported, and the child's own (unused) metrics must not write any: start it without the variable
        multiproc = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        try:
            process.start()
        finally:
            if multiproc is not None:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc
        self._process = process
        child_inbox.close()
        child_outbox.close()
        writer = PipeWriter(os.dup(to_child.fileno()), name="elastic-engine-pipe")  # owns its copy
        to_child.close()
        self._loop.add_reader(self._reader.fileno(), self._receive)
        # uvloop makes the fd non-blocking; a message larger than the pipe holds (the events of a
        # calibration) would then be read in part, and the rest lost: readable means a message has begun,
        # and the child writes the rest of it at once
        os.set_blocking(self._reader.fileno(), True)
        return writer

    @property
    def accepting(self) -> bool:
        return self.ready.is_set() and not self._closed and self.error is None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)  # sent and not answered yet: queued or running in the child

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """Count a request being read and decoded (the child's batcher is not told about it)."""
        self._arriving += 1
        try:
            yield Arrival()
        finally:
            self._arriving -= 1

    def front(self) -> FrontEnd:
        return self.front_costs.now()

    @property
    def handoff_s(self) -> float:
        """How long an answer takes from the child to its response: a lone one's (the event loop is idle
        when it comes), or under load the recent figure, never less than a lone one's."""
        return way_out_s(self.front(), 0, alone=self._arriving <= 1 and not self._pending)

    def admit(self, budget: Budget, received: float, in_front: int | None = None) -> None:
        """The engine's admission rule (service.admission), from what this process knows: the profile's
        mirror, the jobs sent and not answered (queued or running in the child: all counted as queued),
        the other requests being read here. Asked before decoding, so that a refusal under overload costs
        no decode and no pipe round trip; the child decides again, with its exact queue, on submit."""
        if not self.config.reject_unmeetable or budget.deadline is None:
            return
        now, deadline = self.clock(), budget.deadline
        queued = sum(1 for urgency in self._urgency.values() if urgency <= deadline)
        idle = not self._pending and now - self._idle_since >= self.config.cold_after_s
        others = max(0, self._arriving - 1) if in_front is None else in_front
        ahead = Ahead(queued, 0.0, others, len(self._urgency) - queued, idle)
        cfg = self.config
        check(self.profile, cfg.quantile, cfg.max_batch_size, budget, received, now, ahead, self.front())

    def submit(self, job: Job, arrival: Arrival | None = None) -> None:
        if self._closed or self.error is not None:
            raise UnavailableError("the server is shutting down" if self._closed else f"{self.error}")
        if len(self._pending) >= self.config.queue_limit:
            raise QueueFullError(f"{len(self._pending)} requests are already waiting")
        front = self.front()
        if not self._pending and self._arriving <= 1:  # alone: its answer finds the event loop idle
            front = dataclasses.replace(front, out_s=0.0)
        job_id = job.wire_id = next(self._ids)
        self._pending[job_id] = job.future
        self._urgency[job_id] = job.budget.urgency
        tensor = np.ascontiguousarray(job.tensor, dtype=np.float32)  # a NumPy array, or a CPU tensor
        budget = job.budget
        header = {"kind": "job", "id": job_id, "shape": list(tensor.shape), "deadline": budget.deadline,
                  "max_mflops": budget.max_mflops, "min_confidence": budget.min_confidence, "received": job.received,
                  "top_k": job.top_k, "front": dataclasses.astuple(front), "out_s": job.out_s,
                  "coming": job.coming}  # fmt: skip
        if job.progress is not None:  # streamed: the child reads every exit's head and sends each one up
            header["stream"] = True
            self._sinks[job_id] = job.progress
        self._send(header, tensor.tobytes())

    def cancel(self, job: Job) -> None:
        """The client went away: fail its future here and tell the child to drop the job (from its queue,
        or from its batch at the next exit)."""
        if job.wire_id is None or self._pending.pop(job.wire_id, None) is None:
            return
        self._urgency.pop(job.wire_id, None)
        self._sinks.pop(job.wire_id, None)
        if not job.future.done():
            job.future.set_exception(ClientGoneError("the client disconnected"))
        self._send({"kind": "cancel", "id": job.wire_id})
        if not self._pending:
            self._idle_since = self.clock()

    def reload(self, path: Any, profile: LatencyProfile, timeout: float) -> str | None:
        """Hot reload (blocking; not on the event loop): the child loads and calibrates `path` beside the
        served model, then switches between two batches. `profile` becomes the mirror. None, or why not."""
        with self._reload_lock:
            self._reloaded.clear()
            self._send({"kind": "reload", "path": str(path)})
            if not self._reloaded.wait(timeout):
                return f"no answer within {timeout:.0f}s"
            if self._reload_error is None:
                self.profile = profile
                self.env = {**self.env, "ELASTIC_CHECKPOINT": str(path)}  # what a restarted child loads
            return self._reload_error

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let the child answer what it holds (within `timeout`), then end it; blocking. A child that has
        not said ready (warming up, or a replacement) holds no request: it ends at once. Nothing restarts."""
        with self._spawn_lock:  # a restart that is due now finds the engine closed and starts nothing
            self._closed = True
            process, warming = self._process, not self.ready.is_set()
            writers = [w for w in (self._writer, self._standby) if w is not None]
        if process is not None and warming:
            process.kill()
            process.join(5.0)
        else:
            self._send({"kind": "stop", "timeout": timeout})
        if process is not None:
            process.join((timeout or 0.0) + 10.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)
        for writer in writers:
            writer.close()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._fail_all, UnavailableError("the server shut down"))

    # -- plumbing -----------------------------------------------------------------------------------

    def _send(self, header: dict, payload: bytes = b"") -> None:
        if self._writer is not None:  # not started: nobody to tell
            self._writer.send(header, payload)

    def _receive(self) -> None:
        """Event loop: read every message the child has sent so far."""
        try:
            while self._reader.poll():
                self._handle(self._reader.recv())
        except (EOFError, OSError):
            self._child_gone()

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "events":
            self._replay_later(message[1])  # behind the replays of answers read just before: events stay in order
        elif kind == "progress":  # ("progress", id, partial answer, events): a streamed job went on from an exit
            future, sink = self._pending.get(message[1]), self._sinks.get(message[1])
            if future is not None and sink is not None and not future.done():
                sink(message[2])
            self._replay_later(message[-1])
        elif kind in ("answer", "fail"):  # ("answer", id, answer, events) or ("fail", id, error name, text, events)
            job_id, events = message[1], message[-1]
            self._urgency.pop(job_id, None)
            self._sinks.pop(job_id, None)
            future = self._pending.pop(job_id, None)
            if not self._pending:
                self._idle_since = self.clock()
            if future is not None and not future.done():
                if kind == "answer":
                    future.set_result(message[2])
                else:
                    future.set_exception(ERRORS.get(message[2], InferenceError)(message[3]))
            self._replay_later(events)
        elif kind == "reloaded":
            self._reload_error = message[1]
            self._reloaded.set()
        elif kind == "ready":
            restarted = self._served
            if restarted:  # a replacement: its calibration, not the dead child's samples, is the mirror now
                self.profile.clear()
            self._replay(message[1])
            with self._spawn_lock:
                if self._standby is not None:  # a replacement's job pipe: jobs go to it from now on
                    self._writer, self._standby = self._standby, None
            self._served, self._down, self._failure = True, None, None
            self.restart_policy.child_ready()
            self.ready.set()
            if restarted:
                log.warning("the inference process is back after %.1fs (restart %d in a row)",
                            self.clock() - self._down_since, self.restart_policy.attempt)  # fmt: skip
        elif kind == "failed":
            if self._served:  # it ends now (then _child_gone replaces it); kill it if it does not
                self._failure = message[1]
                log.error("the inference process failed: %s", message[1])
                self._loop.call_later(END_GRACE_S, _end, self._process)
            else:  # the first child never got ready: a setup problem, not for restarts to fix
                self.error = RuntimeError(message[1])
                log.error("the inference process failed: %s", message[1])

    def _replay_later(self, events: list[tuple]) -> None:
        """Replay after the handlers just woken have run: a request's response must not wait for the
        metrics of its batch (about 0.15 ms for a full-depth answer here)."""
        if events:
            self._loop.call_soon(self._replay, events)

    def _replay(self, events: list[tuple]) -> None:
        for event in events:
            if event[0] == "profile":
                _, method, args = event
                getattr(self.profile, method)(*args)
            elif self.observer is not None:
                _, hook, args = event
                try:
                    getattr(self.observer, hook)(*args)
                except Exception:  # a metric must never fail a request
                    log.warning("observer hook %s failed", hook, exc_info=True)

    def _child_gone(self) -> None:
        """Event loop: the child's pipe closed. Fail what it held; replace it unless stopping or failed for good."""
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._reader.fileno())
        with contextlib.suppress(OSError):
            self._reader.close()
        how = self._failure and f"failed: {self._failure}"
        self._failure = None
        if self._process is not None:
            how = how or f"exited{_exit_status(self._process)}"
        how = how or "exited"
        with self._spawn_lock:
            closed = self._closed
        if closed or self.error is not None:  # stopping, or failed for good (the first child never got ready)
            self._fail_all(UnavailableError("the inference process exited"))
            return
        if not self._served:
            self.error = RuntimeError(f"the inference process {how} before it was ready")
            log.error("the inference process %s before it was ready", how)
            self._fail_all(UnavailableError(f"the inference process {how}"))
            return
        self.ready.clear()  # not accepting: requests get 503 with the reason (unavailable_detail)
        delay = self.restart_policy.child_exited()
        if self._down is None:
            self._down_since = self.clock()
        self._down = how
        with self._spawn_lock:
            writers = [w for w in (self._writer, self._standby) if w is not None]
            self._writer, self._standby = _NoChild(self), None
        for writer in writers:
            writer.close()
        self._reload_error = f"the inference process {how}"  # a reload waiting for it: answered now
        self._reloaded.set()
        log.error("the inference process %s; restarting it in %.1fs (restart %d in a row)",
                  how, delay, self.restart_policy.attempt)  # fmt: skip
        self._fail_all(UnavailableError(f"the inference process {how}; restarting it"))
        self._loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        """Event loop: start the replacement (its "ready" puts it to work)."""
        with self._spawn_lock:
            if self._closed:
                return
            old = self._process
            if old is not None and old.is_alive():  # closed its pipe and lingers: it is being replaced
                old.kill()
            try:
                self._standby = self._spawn()
            except Exception as err:  # no process to be had (memory, limits): a failed restart, try again later
                log.exception("cannot start the inference process")
                self._failure = f"could not be started: {type(err).__name__}: {err}"
                self._loop.call_soon(self._child_gone)
                return
        if old is not None:
            old.join(0.0)  # reap it
        hook = getattr(self.observer, "engine_restarted", None)
        if hook is not None:
            try:
                hook()
            except Exception:  # a metric must never stop a restart
                log.warning("observer hook engine_restarted failed", exc_info=True)

    # -- health (routes read these with getattr: the thread engine has none of them) --------------

    @property
    def restarting(self) -> bool:
        """A child exited and its replacement is due or warming up."""
        return self._down is not None and not self._closed

    @property
    def ready_detail(self) -> str | None:
        """Why the engine is not ready while it restarts its child (readiness); None otherwise."""
        if not self.restarting:
            return None
        return f"the inference process {self._down}; restarting it, attempt {self.restart_policy.attempt}"

    @property
    def unavailable_detail(self) -> str | None:
        """Why a request is refused while the engine restarts its child; None otherwise."""
        if not self.restarting:
            return None
        return f"the inference process is restarting after it {self._down} (attempt {self.restart_policy.attempt})"

    @property
    def health_detail(self) -> str | None:
        """Why the server is not alive (liveness), None while it is: the engine failed for good, or its
        child could not be restarted (service.restart_policy: 3 failed restarts within 60 s)."""
        if self.error is not None:
            return f"the engine failed: {self.error}"
        policy = self.restart_policy
        if self.restarting and not policy.live:
            return (f"the inference process cannot be restarted: {policy.recent_failures()} restarts failed "
                    f"within {policy.window_s:.0f}s, the last one {self._down}; still trying "
                    f"(attempt {policy.attempt})")  # fmt: skip
        return None

    def _fail_all(self, error: BaseException) -> None:
        pending, self._pending, self._urgency, self._sinks = self._pending, {}, {}, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


END_GRACE_S = 2.0  # a child that reported a failure and has not exited this long after is killed


def _end(process: Any) -> None:
    """Kill `process` if it is still running (it said it failed, and is being replaced)."""
    if process is not None and process.is_alive():
        process.kill()


def _exit_status(process: Any) -> str:
    """' (signal 9, SIGKILL)', ' (exit code 1)', or '' while unknown: how a child that closed its pipe ended."""
    process.join(0.1)  # it closed its pipe on exiting: a moment for the kernel to reap it
    code = process.exitcode
    if code is None:
        return ""
    if code < 0:
        try:
            return f" (signal {-code}, {signal.Signals(-code).name})"
        except ValueError:
            return f" (signal {-code})"
    return f" (exit code {code})"


class _NoChild:
    """The job pipe while no child is ready (a restart is due or warming up): a job is refused at once,
    a reload answered at once; nothing waits for a child that is not there."""

    def __init__(self, engine: EngineProcess) -> None:
        self._engine = engine

    def send(self, header: dict, payload: bytes = b"") -> None:
        engine = self._engine
        why = engine.unavailable_detail or "the inference process is not running"
        if header.get("kind") == "job":  # submit counted it as sent: take it back and refuse it
            engine._urgency.pop(header["id"], None)
            engine._sinks.pop(header["id"], None)
            future = engine._pending.pop(header["id"], None)
            if future is not None and not future.done():
                future.set_exception(UnavailableError(why))
        elif header.get("kind") == "reload":
            engine._reload_error = why
            engine._reloaded.set()

    def close(self) -> None:
        pass


# -- the child --------------------------------------------------------------------------------------


class _Recorder:
    """The child engine's observer: every hook call is kept, to travel with the next answer."""

    def __init__(self, events: list) -> None:
        self._events = events

    def __getattr__(self, hook: str) -> Any:
        def record(*args: Any) -> None:
            self._events.append(("metric", hook, args))

        return record


def _relay_profile(profile: LatencyProfile, events: list) -> None:
    """Keep every observation of `profile` in `events` too, for the parent's mirror of it."""
    for method in ("observe", "observe_head"):
        original = getattr(profile, method)

        def recording(*args: Any, _original: Any = original, _method: str = method) -> None:
            _original(*args)
            events.append(("profile", _method, args))

        setattr(profile, method, recording)


def _reload(service: Any, path: Path, events: list) -> str | None:  # pragma: no cover - in the child
    """The child's half of a hot reload (the parent checked the checkpoint already). None, or why not."""
    from service.profile import calibrate
    from service.reload import SWAP_TIMEOUT_S
    from service.state import load_model

    try:
        settings = service.settings
        runner, profile = load_model(settings, path, service.runner.device)
        _relay_profile(profile, events)
        calibrate(profile, runner.time_pass, settings.warmup_runs, settings.calibration_runs, idle=time.sleep)
        if not service.engine.swap_model(runner, profile, SWAP_TIMEOUT_S):
            return f"the inference thread did not switch within {SWAP_TIMEOUT_S:.0f}s"
        service.adopt(path, runner, profile)
    except Exception as err:  # the old model keeps serving
        return f"{type(err).__name__}: {err}"
    return None


class _Uplink:
    """The child's pipe to the server, shared by the inference thread (answers) and the main thread
    (reload results, the idle flush of events): one message at a time, each carrying the events
    recorded since the last one."""

    def __init__(self, outbox: Any, events: list) -> None:
        self._outbox, self._events = outbox, events
        self._lock = threading.Lock()
        self._held: list[tuple] = []  # answers stamped and not sent yet (see `deliver`)

    def send(self, message: tuple, with_events: bool = True) -> None:
        with self._lock, contextlib.suppress(OSError):  # the server is gone: nobody to tell
            if with_events:
                taken = self._events[:]  # appended to by the inference thread: take what is there, drop as much
                del self._events[: len(taken)]
                message = (*message, taken)
            self._outbox.send(message)

    def hold(self, message: tuple) -> None:
        """Keep `message` until `deliver`: the engine stamps all answers of an exit, then sends them."""
        with self._lock:
            self._held.append(message)

    def deliver(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for message in held:
            self.send(message)

    def flush(self) -> None:
        """What the idle refresh observes reaches the parent's profile without an answer."""
        if self._events:
            self.send(("events",))


class _Reply:
    """A job's answer, sent up the pipe by the inference thread when the engine delivers (right after
    the exit that made it)."""

    def __init__(self, job_id: int, uplink: _Uplink) -> None:
        self.job_id, self._uplink, self._done = job_id, uplink, False

    def done(self) -> bool:
        return self._done

    def drop(self) -> None:
        """Its client went away: nothing is to be sent for it."""
        self._done = True

    def progress(self, partial: Any) -> None:
        """A streamed job went on from an exit: what it would have answered there goes up with this exit's
        answers (the engine delivers them)."""
        if not self._done:
            self._uplink.hold(("progress", self.job_id, dataclasses.replace(partial, runner=None)))

    def settle(self, answer: Any, error: BaseException | None) -> None:
        self._done = True
        if error is None:  # the parent labels it with its own copy of the runner
            self._uplink.hold(("answer", self.job_id, dataclasses.replace(answer, runner=None)))
        else:
            self._uplink.hold(("fail", self.job_id, type(error).__name__, str(error)))


class _Intake:
    """The child's end of the job pipe, read by the inference thread itself (`Engine.feed_from`): jobs
    go to the engine, control messages (stop, reload) to the main thread."""

    def __init__(self, fd: int, engine: Any, uplink: _Uplink, control: queue.SimpleQueue, to_tensor: Any) -> None:
        self.fd, self.engine, self.uplink, self.control = fd, engine, uplink, control
        self._to_tensor = to_tensor  # (raw float32 bytes, shape) → tensor: torch is imported in the child only
        self._readable = select.poll()
        self._readable.register(fd, select.POLLIN)
        self._replies: weakref.WeakValueDictionary[int, _Reply] = weakref.WeakValueDictionary()  # for cancel

    def drain(self) -> bool:
        """Every message that has arrived; False once no more jobs will come (stop, or the server is gone)."""
        while self._readable.poll(0):
            try:
                message, data = read_message(self.fd)
            except (EOFError, OSError):
                self.control.put({"kind": "stop", "timeout": 0.0})
                return False
            if message["kind"] == "job":
                self._submit(message, data)
                continue
            if message["kind"] == "cancel":  # done without an answer: skipped in the queue, dropped from a batch
                reply = self._replies.get(message["id"])
                if reply is not None:
                    reply.drop()
                continue
            self.control.put(message)
            if message["kind"] == "stop":
                return False
        return True

    def _submit(self, message: dict, data: bytes) -> None:
        job_id = message["id"]
        self.engine.front_from_parent = FrontEnd(*message["front"])  # the front end's costs, measured there
        tensor = self._to_tensor(data, message["shape"])
        budget = Budget(deadline=message["deadline"], max_mflops=message["max_mflops"],
                        min_confidence=message["min_confidence"])  # fmt: skip
        reply = self._replies[job_id] = _Reply(job_id, self.uplink)
        progress = reply.progress if message.get("stream") else None  # streamed: every exit's answer goes up
        job = Job(tensor, budget, message["received"], reply, top_k=message["top_k"], out_s=message.get("out_s"),
                  coming=message.get("coming", 0), progress=progress)  # fmt: skip
        try:
            self.engine.submit(job)
        except (QueueFullError, UnavailableError, DeadlineUnmeetableError) as err:
            self.uplink.send(("fail", job_id, type(err).__name__, str(err)))


def child_main(  # pragma: no cover - runs in the child process
    inbox: Any, outbox: Any, env: dict[str, str], cpus: list[int] | None = None
) -> None:
    """Build the ordinary service (engine in a thread) and let its inference thread read the jobs and
    send the answers itself: a request wakes one thread here, not three. The main thread handles stop,
    reload and the idle flush of metric events. `cpus`: where this process runs."""
    if cpus:
        try:  # every thread: importing this module started some already (NumPy's BLAS pool)
            pin_this_process(frozenset(cpus))
        except OSError as err:
            log.warning("cannot pin the inference process to CPUs %s: %s", cpus, err)
    import torch

    from service.settings import Settings
    from service.state import build_service

    settings = Settings.from_env({**env, "ELASTIC_ENGINE": "thread"})
    try:
        service = build_service(settings)
    except Exception as err:
        outbox.send(("failed", f"{type(err).__name__}: {err}"))
        return
    grow_pipe(outbox.fileno())  # room for bursts of answers while the server's event loop is busy
    events: list = []
    engine, profile = service.engine, service.profile
    engine.observer = _Recorder(events)
    _relay_profile(profile, events)
    uplink = _Uplink(outbox, events)
    control: queue.SimpleQueue = queue.SimpleQueue()

    def to_tensor(data: bytes, shape: list[int]) -> torch.Tensor:
        return torch.frombuffer(bytearray(data), dtype=torch.float32).view(shape)

    intake = _Intake(inbox.fileno(), engine, uplink, control, to_tensor)
    engine.feed_from(inbox.fileno(), intake.drain, uplink.deliver)
    engine.start()
    while not engine.ready.wait(0.5):
        if engine.error is not None:
            uplink.send(("failed", f"calibration failed: {engine.error}"), with_events=False)
            return
    uplink.send(("ready",))
    while True:
        try:
            message = control.get(timeout=1.0)
        except queue.Empty:
            uplink.flush()
            if engine.error is not None:  # nobody reads the jobs any more: end, so that the server fails them
                uplink.send(("failed", f"the inference thread failed: {engine.error}"), with_events=False)
                break
            continue
        if message["kind"] == "stop":
            engine.stop(message["timeout"])
            break
        if message["kind"] == "reload":
            uplink.send(("reloaded", _reload(service, Path(message["path"]), events)), with_events=False)
    uplink.flush()
    outbox.close()
