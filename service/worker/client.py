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
latency observations into a mirror of the profile (for /v1/model and admission). Both ways the
messages are JSON headers and raw bytes (service.worker.wire; the answers' kinds in
service.worker.messages): neither process unpickles anything.

Hot reload: the parent reads the new checkpoint's elastic.json (service.http.reload); the child loads,
checks, runs once and calibrates the model on its own device, switches between two batches, and sends
the new profile. The parent holds no model: labels and costs come from elastic.json.

With `elastic serve --workers N` (service.worker.supervisor) the "child" is a shared engine process that
this one connects to (`ELASTIC_ENGINE_SOCKET`) rather than spawns: the same protocol, on pipes passed over
a Unix socket; the supervisor restarts that process, and this one reconnects.

Self-healing: a child that exits once the engine has served (killed, out of memory, a CUDA error) is
replaced. The requests it held fail at once (503 + Retry-After); until the new child has loaded and
calibrated (a few seconds) the engine is not ready and says why (`ready_detail`, `unavailable_detail`);
the mirror of the profile is refilled from the new child's calibration. Restarts back off and count
towards liveness as service.worker.restart_policy says: only 3 failed restarts within 60 s make the server
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
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from elastic_anytime.service.engine.admission import (
    Ahead,
    BacklogError,
    DeadlineUnmeetableError,
    FrontEnd,
    check,
    way_out_s,
)
from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import QUANTILES, LatencyProfile
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.engine.types import (
    Arrival,
    ClientGoneError,
    EngineConfig,
    InferenceError,
    Job,
    QueueFullError,
    UnavailableError,
)
from elastic_anytime.service.worker.cpu_placement import Placement, pin_this_process
from elastic_anytime.service.worker.host import child_main
from elastic_anytime.service.worker.messages import from_header
from elastic_anytime.service.worker.restart_policy import RestartPolicy
from elastic_anytime.service.worker.wire import MessageReader, PipeWriter

log = logging.getLogger(__name__)

ERRORS = {cls.__name__: cls for cls in (BacklogError, DeadlineUnmeetableError, InferenceError, QueueFullError,
                                        UnavailableError)}  # fmt: skip


class EngineProcess:
    """The parent's side: the interface of `service.engine.scheduler.Engine`, served by a child process."""

    def __init__(
        self,
        env: dict[str, str],
        profile: LatencyProfile,
        config: EngineConfig,
        observer: Any = None,
        placement: Placement | None = None,
    ):
        self.env = env  # ELASTIC_* settings for the child (Settings.to_env), which builds the same config
        # a shared engine process to connect to (`elastic serve --workers N`, service.worker.supervisor) rather
        # than a child of this process's own; the supervisor restarts it, this process reconnects
        self.connect: str | None = env.get("ELASTIC_ENGINE_SOCKET") or None
        self.checkpoint: str | None = env.get("ELASTIC_CHECKPOINT") or None  # what the engine serves, as it said
        # called on the event loop with the new checkpoint when the engine switched model on another
        # front end's hot reload (or a restarted engine serves another one)
        self.on_model: Callable[[Path], None] | None = None
        self.device: str | None = None  # where the engine runs, as it said ('cuda:0'); None until it has
        self.profile = profile  # a mirror, fed by the child's observations
        self.config = config
        self.observer = observer
        self.placement = placement  # CPUs for this process and the child (service.worker.cpu_placement); None: any
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
        self._reload_result: tuple[Any, dict | None] = (None, None)  # the engine's answer to a reload
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
        if self.connect is not None:  # a shared engine is never "failed for good" here: it is restarted
            self._served = True
            try:
                self._writer = self._spawn()
            except OSError as err:
                self._writer, self._failure = _NoChild(self), f"could not be reached: {err}"
                self._loop.call_soon(self._child_gone)
            return
        self._writer = self._spawn()
        if self.placement is not None:
            try:
                pin_this_process(self.placement.server)
            except OSError as err:  # CPUs this process may not use: serve unpinned rather than not at all
                log.warning("cannot pin the server to CPUs %s: %s", self.placement.describe()["server"], err)

    def _spawn(self) -> PipeWriter:
        """Start a child (or connect to the shared engine) and listen to it; returns its job pipe. Event loop."""
        if self.connect is not None:
            return self._attach(self.connect)
        context = multiprocessing.get_context("spawn")
        # two one-way pipes: the server writes jobs with a PipeWriter (no thread hand-off while the pipe has room)
        child_inbox, to_child = context.Pipe(duplex=False)
        answers, child_outbox = context.Pipe(duplex=False)
        self._reader = MessageReader(os.dup(answers.fileno()))
        answers.close()
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
        self._listen()
        return writer

    def _attach(self, path: str) -> PipeWriter:
        """Connect to the shared engine process: hand it the far ends of two pipes (SCM_RIGHTS), jobs down
        and answers up, the same protocol as with a child of our own."""
        jobs_read, jobs_write = os.pipe()
        answers_read, answers_write = os.pipe()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5.0)
                sock.connect(path)
                socket.send_fds(sock, [b"front end"], [jobs_read, answers_write])
        except OSError:
            for fd in (jobs_write, answers_read):
                os.close(fd)
            raise
        finally:
            os.close(jobs_read)
            os.close(answers_write)
        self._reader = MessageReader(answers_read)
        writer = PipeWriter(jobs_write, name="elastic-engine-pipe")
        self._listen()
        return writer

    def _listen(self) -> None:
        self._loop.add_reader(self._reader.fileno(), self._receive)
        # uvloop makes the fd non-blocking; a message larger than the pipe holds (the events of a
        # calibration) would then be read in part, and the rest lost: readable means a message has begun,
        # and the child writes the rest of it at once
        os.set_blocking(self._reader.fileno(), True)

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

    def admit(self, budget: Budget, received: float, in_front: int | None = None, crowded: bool = False) -> None:
        """The engine's admission rule (service.engine.admission), from what this process knows: the profile's
        mirror, the jobs sent and not answered (queued or running in the child: all counted as queued),
        the other requests being read here. Asked before decoding, so that a refusal under overload costs
        no decode and no pipe round trip; the child decides again, with its exact queue, on submit."""
        if not self.config.reject_unmeetable or budget.deadline is None:
            return
        now, deadline = self.clock(), budget.deadline
        queued = sum(1 for urgency in self._urgency.values() if urgency <= deadline)
        idle = not self._pending and now - self._idle_since >= self.config.cold_after_s
        others = max(0, self._arriving - 1) if in_front is None else in_front
        ahead = Ahead(queued, 0.0, others, len(self._urgency) - queued, idle, crowded)
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
                  "top_k": job.top_k, "front": front.as_tuple(), "out_s": job.out_s,
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

    def reload(self, path: Path, timeout: float) -> dict[str, float]:
        """Hot reload (blocking; not on the event loop): the inference process loads `path` beside the served
        model, checks it, runs it once and calibrates it on its own device, then switches between two batches;
        the mirror of the profile becomes the new model's. Returns {"load_s", "calibrate_s"}; ReloadError
        when the old model goes on serving. With a shared engine every other front end is told too."""
        with self._reload_lock:
            self._reloaded.clear()
            self._send({"kind": "reload", "path": str(path)})
            if not self._reloaded.wait(timeout):
                raise ReloadError(503, "swap_failed", f"the inference process did not answer within {timeout:.0f}s")
            error, info = self._reload_result
            if error is not None:
                raise ReloadError(*error)
            return {"load_s": info["load_s"], "calibrate_s": info["calibrate_s"]}

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
        elif self.connect is not None:  # the shared engine serves others: wait for our answers, then leave
            deadline = time.monotonic() + (timeout or 0.0)
            while self._pending and time.monotonic() < deadline:
                time.sleep(0.01)
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
                header, _ = self._reader.recv()
                self._handle(from_header(header))
        except (EOFError, OSError, ValueError):  # ValueError: not a message of the protocol (a bug): start over
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
        elif kind == "reloaded":  # ("reloaded", error or None, what is served, the new profile's samples)
            if message[1] is None:
                self._switched(message[2], message[3], tell=False)
            self._reload_result = (message[1], message[2])
            self._reloaded.set()
        elif kind == "model":  # ("model", what is served, its profile's samples): another front end's reload
            self._switched(message[1], message[2], tell=True)
        elif kind == "ready":  # ("ready", what is served, [its whole profile]): the engine's, not the last one's
            restarted = self._served and self._down is not None
            self.profile.clear()
            served, device = message[1]["checkpoint"], message[1].get("device")
            if self.checkpoint is not None and Path(served).resolve() != Path(self.checkpoint).resolve():
                self._switched(message[1], [], tell=True)  # a restarted shared engine, after a reload
            elif device != self.device:  # the first ready: what "auto" became; tell the service
                self.checkpoint, self.device = served, device
                self._tell(Path(served))
            self._replay(message[2])
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

    def _switched(self, info: dict, records: list, tell: bool) -> None:
        """Event loop: the engine serves `info["checkpoint"]` now; the mirror starts from its profile's samples
        (`records`), and a restarted child loads it too. `tell`: the service adopts it (`on_model`)."""
        profile = self.profile
        self.profile = LatencyProfile(info["num_exits"], profile.buckets, profile.window, profile.max_age_s)
        self.profile.restore(records)
        self.checkpoint, self.device = info["checkpoint"], info.get("device", self.device)
        self.env = {**self.env, "ELASTIC_CHECKPOINT": info["checkpoint"]}  # what a restarted child loads
        if tell:
            self._tell(Path(info["checkpoint"]))

    def _tell(self, path: Path) -> None:
        """The service describes the model the engine serves now (`on_model`)."""
        if self.on_model is not None:
            try:
                self.on_model(path)
            except Exception:  # the engine serves it whatever this front end makes of it
                log.exception("cannot describe the model the engine serves (%s)", path)

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
        if self._loop is not None and self._reader is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._reader.fileno())
        if self._reader is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
        how = self._failure and f"failed: {self._failure}"
        self._failure = None
        if self._process is not None:
            how = how or f"exited{_exit_status(self._process)}"
        how = how or ("closed the connection" if self.connect is not None else "exited")
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
        self._reload_result = ((503, "swap_failed", f"the inference process {how}"), None)  # a waiting reload
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
        if self.connect is not None:  # reconnected: the supervisor restarted the engine, which counts that
            return
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
        child could not be restarted (service.worker.restart_policy: 3 failed restarts within 60 s)."""
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
            engine._reload_result = ((503, "swap_failed", why), None)
            engine._reloaded.set()

    def close(self) -> None:
        pass
