"""The inference process: one engine (service.engine.scheduler, in threads) serving one or more front ends.

Each front end is a connection of two pipes: jobs down and answers up, in one format both ways
(service.worker.wire: a JSON header and raw bytes; service.worker.messages: what each answer kind
carries). Neither side unpickles anything. With one front end
(`elastic serve`) the pipes are inherited from the server that spawned this process (`child_main`),
and it ends with that server. With several (`elastic serve --workers N`, service.worker.supervisor) it
listens on a Unix socket (`host_main`): a front end connects and passes its two pipe ends over it
(SCM_RIGHTS), then speaks the same protocol as to a child of its own.

The inference thread reads every job pipe itself (an epoll set, readable when any of them is), so
jobs from every front end meet in one queue and share batches. An answer goes up the pipe of the
front end that sent its job. Latency observations go to every front end (each mirrors the profile
for admission and /v1/model); metric events go to one, the oldest connection, so that each is
counted once in the merged /metrics. A hot reload happens here, once: the new checkpoint is loaded,
checked, run once and calibrated on this process's device, and every front end is told.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import select
import signal
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from elastic_anytime.service.engine.admission import DeadlineUnmeetableError, FrontEnd
from elastic_anytime.service.engine.loading import SWAP_TIMEOUT_S, check_compatible, load_model, trial_run
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile, calibrate
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.engine.types import Job, QueueFullError, UnavailableError
from elastic_anytime.service.settings import Settings
from elastic_anytime.service.worker.cpu_placement import pin_this_process
from elastic_anytime.service.worker.heap import freeze_long_lived
from elastic_anytime.service.worker.messages import to_header
from elastic_anytime.service.worker.served import Served, serve_model
from elastic_anytime.service.worker.wire import MessageWriter, grow_pipe, read_message

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".checkpoint"  # beside the socket: what a restarted host loads after a hot reload


class _Events:
    """What the front ends are told besides answers: metric events (to one of them) and profile
    observations (to each)."""

    def __init__(self) -> None:
        self.metrics: list[tuple] = []  # appended to by the inference thread
        self._lock = threading.Lock()
        self._mirrors: list[list[tuple]] = []

    def subscribe(self) -> list[tuple]:
        mirror: list[tuple] = []
        with self._lock:
            self._mirrors.append(mirror)
        return mirror

    def unsubscribe(self, mirror: list[tuple]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._mirrors.remove(mirror)

    def profile(self, method: str, args: tuple) -> None:
        with self._lock:
            for mirror in self._mirrors:
                mirror.append(("profile", method, args))


class _Recorder:
    """The engine's observer here: every hook call is kept, to travel with the next answer."""

    def __init__(self, events: list) -> None:
        self._events = events

    def __getattr__(self, hook: str) -> Any:
        def record(*args: Any) -> None:
            self._events.append(("metric", hook, args))

        return record


def relay_profile(profile: LatencyProfile, events: _Events) -> None:
    """Pass every observation of `profile` on to the front ends' mirrors of it."""
    for method in ("observe", "observe_head"):
        original = getattr(profile, method)

        def recording(*args: Any, _original: Any = original, _method: str = method) -> None:
            _original(*args)
            events.profile(_method, args)

        setattr(profile, method, recording)


class _Uplink:
    """One front end's answer pipe, shared by the inference thread (answers) and the main thread (reload
    results, the idle flush of events): one message at a time, each carrying the events since the last."""

    def __init__(self, outbox: MessageWriter, events: _Events, mirror: list[tuple], primary: Any) -> None:
        self._outbox, self._events, self._mirror, self._primary = outbox, events, mirror, primary
        self._lock = threading.Lock()
        self._held: list[tuple] = []  # answers stamped and not sent yet (see `deliver`)

    def send(self, message: tuple, with_events: bool = True) -> None:
        with self._lock, contextlib.suppress(OSError):  # the front end is gone: nobody to tell
            if with_events:
                message = (*message, self._take())
            self._outbox.send(to_header(message))

    def _take(self) -> list[tuple]:
        """Lock held: the events due to this front end. Lists are appended to by other threads: take what
        is there, drop as much."""
        taken = self._mirror[:]
        del self._mirror[: len(taken)]
        if self._primary():
            metrics = self._events.metrics
            more = metrics[:]
            del metrics[: len(more)]
            taken += more
        return taken

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
        """What the idle refresh observes reaches the front end's mirror without an answer."""
        if self._mirror or (self._events.metrics and self._primary()):
            self.send(("events",))

    def close(self) -> None:
        with self._lock:
            self._outbox.close()


class _Reply:
    """A job's answer, sent up its front end's pipe by the inference thread when the engine delivers."""

    def __init__(self, job_id: int, uplink: _Uplink) -> None:
        self.job_id, self._uplink, self._done = job_id, uplink, False

    def done(self) -> bool:
        return self._done

    def drop(self) -> None:
        """Its client (or its whole front end) went away: nothing is to be sent for it."""
        self._done = True

    def progress(self, partial: Any) -> None:
        """A streamed job went on from an exit: what it would have answered there goes up with this exit's
        answers (the engine delivers them)."""
        if not self._done:
            self._uplink.hold(("progress", self.job_id, dataclasses.replace(partial, runner=None)))

    def settle(self, answer: Any, error: BaseException | None) -> None:
        self._done = True
        if error is None:  # the front end labels it from its own description of the model
            self._uplink.hold(("answer", self.job_id, dataclasses.replace(answer, runner=None)))
        else:
            self._uplink.hold(("fail", self.job_id, type(error).__name__, str(error)))


class _Connection:
    """One front end: its job pipe (read by the inference thread), its answer pipe, its jobs' replies."""

    def __init__(self, host: Host, inbox_fd: int, outbox: MessageWriter, source: int) -> None:
        self.host, self.inbox_fd, self.source = host, inbox_fd, source
        self.mirror = host.events.subscribe()
        self.uplink = _Uplink(outbox, host.events, self.mirror, lambda: host.primary() is self)
        self.replies: weakref.WeakValueDictionary[int, _Reply] = weakref.WeakValueDictionary()  # for cancel
        self._readable = select.poll()
        self._readable.register(inbox_fd, select.POLLIN)

    def drain(self) -> bool:
        """Every message that has arrived; False once the front end is gone (its pipe closed)."""
        while self._readable.poll(0):
            try:
                message, data = read_message(self.inbox_fd)
            except (EOFError, OSError):
                return False
            kind = message["kind"]
            if kind == "job":
                self.host.submit(self, message, data)
            elif kind == "cancel":  # done without an answer: skipped in the queue, dropped from a batch
                reply = self.replies.get(message["id"])
                if reply is not None:
                    reply.drop()
            else:  # stop, reload: the main thread's
                self.host.control.put((self, message))
        return True

    def close(self) -> None:
        for reply in list(self.replies.values()):
            reply.drop()
        self.host.events.unsubscribe(self.mirror)
        self.uplink.close()
        with contextlib.suppress(OSError):
            os.close(self.inbox_fd)


class Host:
    """The engine of what this process serves (service.worker.served) fed by front-end connections.
    `single`: the one front end that spawned this process; its leaving ends the process."""

    def __init__(self, service: Served, single: bool, state_file: Path | None = None) -> None:
        self.service, self.engine, self.single, self.state_file = service, service.engine, single, state_file
        self.events = _Events()
        self.engine.observer = _Recorder(self.events.metrics)
        relay_profile(service.profile, self.events)
        self.control: queue.SimpleQueue[tuple[_Connection | None, dict]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}  # by job pipe fd, oldest first
        self._sources = 0
        self._ready = False
        self._stopping = False
        self._epoll = select.epoll()
        self.engine.feed_from(self._epoll.fileno(), self.drain, self.deliver)

    def primary(self) -> _Connection | None:
        """The front end that replays the metric events: the oldest connection."""
        return next(iter(self._connections.values()), None)

    def add(self, inbox_fd: int, outbox: MessageWriter) -> None:
        """A front end's two pipe ends (any thread): it is told "ready" once the engine is."""
        grow_pipe(outbox.fileno())  # room for bursts of answers while the front end's event loop is busy
        with self._lock:
            self._sources += 1
            connection = _Connection(self, inbox_fd, outbox, self._sources)
            self._connections[inbox_fd] = connection
            if self._ready:
                connection.mirror.clear()  # the ready message holds the whole profile
                connection.uplink.send(self._ready_message(), with_events=False)
        self._epoll.register(inbox_fd, select.EPOLLIN)

    def _ready_message(self) -> tuple:
        """What a front end needs to serve: the model, and the whole profile for its mirror."""
        runner = self.service.runner
        info = {
            "checkpoint": str(self.service.checkpoint_path),
            "num_exits": runner.num_exits,
            "device": str(runner.device),
        }
        return ("ready", info, [("profile", "restore", (self.service.profile.export(),))])

    def drain(self) -> bool:
        """Inference thread: read every job pipe that is readable; False once this process stops."""
        for fd, _ in self._epoll.poll(0):
            connection = self._connections.get(fd)
            if connection is not None and not connection.drain():
                self._drop(connection)
        return not self._stopping

    def deliver(self) -> None:
        for connection in list(self._connections.values()):
            connection.uplink.deliver()

    def submit(self, connection: _Connection, message: dict, data: bytes) -> None:
        import torch

        job_id = message["id"]
        self.engine.front_from_parent = FrontEnd(*message["front"])  # the front end's costs, measured there
        shape = message["shape"]
        tensor = torch.frombuffer(bytearray(data), dtype=torch.float32).view(shape)
        budget = Budget(deadline=message["deadline"], max_mflops=message["max_mflops"],
                        min_confidence=message["min_confidence"])  # fmt: skip
        reply = connection.replies[job_id] = _Reply(job_id, connection.uplink)
        progress = reply.progress if message.get("stream") else None  # streamed: every exit's answer goes up
        job = Job(tensor, budget, message["received"], reply, top_k=message["top_k"], out_s=message.get("out_s"),
                  coming=message.get("coming", 0), progress=progress, source=connection.source)  # fmt: skip
        try:
            self.engine.submit(job)
        except (QueueFullError, UnavailableError, DeadlineUnmeetableError) as err:
            connection.uplink.send(("fail", job_id, type(err).__name__, str(err)))

    def _drop(self, connection: _Connection) -> None:
        """A front end went away: its queued jobs are skipped, its rows leave their batches."""
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(connection.inbox_fd)
        with self._lock:
            self._connections.pop(connection.inbox_fd, None)
        connection.close()
        if self.single:  # the server that spawned this process is gone: so is its purpose
            self.control.put((None, {"kind": "stop", "timeout": 0.0}))

    def broadcast(self, message: tuple, but: _Connection | None = None) -> None:
        for connection in list(self._connections.values()):
            if connection is not but:
                connection.uplink.send(message, with_events=False)

    def run(self) -> None:
        """Main thread: start the engine (warm-up, calibration), say ready, then handle stop and reload."""
        self.engine.start()
        while not self.engine.ready.wait(0.5):
            if self.engine.error is not None:
                self.broadcast(("failed", f"calibration failed: {self.engine.error}"))
                return
        freeze_long_lived("inference process")  # before the first request: the full collection is not serving's
        with self._lock:
            self._ready = True
            for connection in self._connections.values():
                connection.mirror.clear()  # the calibration: the ready message holds the whole profile
                connection.uplink.send(self._ready_message(), with_events=False)
        while True:
            try:
                connection, message = self.control.get(timeout=1.0)
            except queue.Empty:
                for connection in list(self._connections.values()):
                    connection.uplink.flush()
                if self.engine.error is not None:  # nobody reads the jobs any more: end, so that they are failed
                    self.broadcast(("failed", f"the inference thread failed: {self.engine.error}"))
                    break
                continue
            if message["kind"] == "stop":
                self._stopping = True
                self.engine.stop(message["timeout"])
                break
            if message["kind"] == "reload" and connection is not None:
                self._reload(connection, Path(message["path"]))
        for connection in list(self._connections.values()):
            connection.uplink.flush()
            connection.uplink.close()

    def _reload(self, connection: _Connection, path: Path) -> None:
        error, info, records = reload_here(self.service, path, self.events)
        if error is not None:
            connection.uplink.send(("reloaded", error, None, None), with_events=False)
            return
        if self.state_file is not None:
            with contextlib.suppress(OSError):
                self.state_file.write_text(str(path))
        freeze_long_lived("inference process, new model", collect_first=False)  # serving goes on meanwhile
        connection.uplink.send(("reloaded", None, info, records), with_events=False)
        self.broadcast(("model", info, records), but=connection)


def reload_here(
    service: Served, path: Path, events: _Events
) -> tuple[tuple[int, str, str] | None, dict, list]:  # pragma: no cover - in the inference process
    """Load, check, run once and calibrate `path` on this process's device, then switch between two batches.
    (error as (HTTP status, code, message), or None; what is served now; the new profile's samples)."""
    from elastic_anytime.models.checkpoint import CheckpointError  # torch: this process runs the model

    settings = service.settings
    try:
        started = time.perf_counter()
        try:
            runner, profile = load_model(settings, path, service.runner.device)
        except CheckpointError as err:
            raise ReloadError(422, "invalid_checkpoint", str(err)) from None
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as err:  # what a broken file can raise
            raise ReloadError(422, "invalid_checkpoint", f"cannot load {path}: {err}") from None
        load_s = time.perf_counter() - started
        check_compatible(service.runner, runner)
        started = time.perf_counter()
        try:
            trial_run(runner)
            calibrate(profile, runner.time_pass, settings.warmup_runs, settings.calibration_runs, idle=time.sleep)
        except ReloadError:
            raise
        except Exception as err:  # a model that cannot run here must not replace one that can
            raise ReloadError(422, "checkpoint_failed_trial", f"the model failed a trial run: {err}") from None
        calibrate_s = time.perf_counter() - started
        records = profile.export()
        relay_profile(profile, events)
        if not service.engine.swap_model(runner, profile, SWAP_TIMEOUT_S):
            raise ReloadError(503, "swap_timeout", f"the inference thread did not switch within {SWAP_TIMEOUT_S:.0f}s")
        service.adopt(path, runner, profile)
    except ReloadError as err:  # the old model keeps serving
        return (err.status, err.code, err.message), {}, []
    except Exception as err:
        return (503, "swap_failed", f"{type(err).__name__}: {err}"), {}, []
    info = {"checkpoint": str(path), "num_exits": runner.num_exits, "device": str(runner.device), "load_s": load_s,
            "calibrate_s": calibrate_s}  # fmt: skip
    return None, info, records


def _build(env: dict[str, str], cpus: list[int] | None) -> Served:  # pragma: no cover - in the inference process
    """Pin this process, then load the model and build its engine (in a thread of this process)."""
    if cpus:
        try:  # every thread: importing this module started some already (NumPy's BLAS pool)
            pin_this_process(frozenset(cpus))
        except OSError as err:
            log.warning("cannot pin the inference process to CPUs %s: %s", cpus, err)
    return serve_model(Settings.from_env({**env, "ELASTIC_ENGINE": "thread"}))


def child_main(  # pragma: no cover - runs in the child process
    inbox: Any, outbox: Any, env: dict[str, str], cpus: list[int] | None = None
) -> None:
    """The inference process of one server (service.worker.client), on the pipes it inherited."""
    answers = MessageWriter(os.dup(outbox.fileno()))
    outbox.close()
    try:
        service = _build(env, cpus)
    except Exception as err:
        answers.send(to_header(("failed", f"{type(err).__name__}: {err}")))
        answers.close()
        return
    host = Host(service, single=True)
    host.add(os.dup(inbox.fileno()), answers)
    inbox.close()
    host.run()


def host_main(  # pragma: no cover - runs in the engine process of `elastic serve --workers N`
    listener: socket.socket, env: dict[str, str], restarted: bool = False
) -> None:
    """The shared inference process: front ends connect to `listener` (a Unix socket) and pass their pipes.
    SIGTERM answers what is queued, then ends it. `restarted`: it replaces one that exited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor stops us last
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    state_file = Path(listener.getsockname() + CHECKPOINT_SUFFIX)
    with contextlib.suppress(OSError):  # a hot reload happened before: serve what it switched to
        env = {**env, "ELASTIC_CHECKPOINT": state_file.read_text().strip() or env.get("ELASTIC_CHECKPOINT", "")}
    service = _build(_device_of(env), None)  # a failure ends this process: the supervisor restarts it, with back-off
    host = Host(service, single=False, state_file=state_file)
    if restarted:
        host.events.metrics.append(("metric", "engine_restarted", ()))
    signal.signal(signal.SIGTERM, lambda *_: host.control.put((None, {"kind": "stop", "timeout": 30.0})))
    threading.Thread(target=_accept, args=(listener, host), name="elastic-accept", daemon=True).start()
    log.info("engine process %d serving front ends on %s", os.getpid(), listener.getsockname())
    host.run()


def _device_of(env: dict[str, str]) -> dict[str, str]:  # pragma: no cover - in the engine process
    """Engine number i of several (ELASTIC_ENGINE_INDEX) runs on cuda:i when the device is 'auto' or 'cuda' and
    CUDA is there (modulo the devices seen); an explicit device, or the CPU, is left as it is."""
    index = int(env.get("ELASTIC_ENGINE_INDEX") or 0)
    if env.get("ELASTIC_DEVICE", "auto") not in ("auto", "cuda"):
        return env
    import torch

    if not torch.cuda.is_available():
        return env
    return {**env, "ELASTIC_DEVICE": f"cuda:{index % torch.cuda.device_count()}"}


def _accept(listener: socket.socket, host: Host) -> None:  # pragma: no cover - in the engine process
    """Take each front end's two pipe ends (SCM_RIGHTS) and hand them to the host."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            try:
                _, fds, _, _ = socket.recv_fds(connection, 16, 2)
            except OSError as err:
                log.warning("a front end's connection failed: %s", err)
                continue
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        inbox_fd, outbox_fd = fds
        host.add(inbox_fd, MessageWriter(outbox_fd))
