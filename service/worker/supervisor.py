"""`elastic serve --workers N [--engines E]`: N HTTP front ends in front of E engine processes (one per GPU).

This process binds the HTTP socket and a Unix socket for the engine, then starts the engine process
(`service.worker.host.host_main`: the model, the batcher, the profile) and N front ends (uvicorn on
the shared HTTP socket, with ELASTIC_ENGINE_SOCKET set: they parse, decode and answer, and submit to
the engine). Every front end's requests meet in the engine's one queue and share its batches; a hot
reload happens once, in the engine, and reaches every front end.

It restarts whichever process exits, with back-off. Front ends reconnect to a restarted engine by
themselves (service.worker.client), and meanwhile refuse requests with 503 and the reason. On
SIGTERM or SIGINT the front ends drain first (they answer what they hold), then the engine stops.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_anytime.service.worker.cpu_placement import engine_threads
from elastic_anytime.service.worker.host import host_main
from elastic_anytime.service.worker.restart_policy import RestartPolicy

log = logging.getLogger(__name__)

APP = "elastic_anytime.service.http.main:create_app"


def _front_end(options: dict[str, Any], env: dict[str, str], sock: socket.socket) -> None:  # pragma: no cover
    """One HTTP front end (a process of its own): uvicorn on the supervisor's socket."""
    import uvicorn

    os.environ.update(env)
    uvicorn.Server(uvicorn.Config(APP, factory=True, **options)).run(sockets=[sock])


@dataclass
class _Slot:
    """One process the supervisor keeps running, and when it may next be started."""

    name: str
    process: Any = None
    policy: RestartPolicy = field(default_factory=lambda: RestartPolicy(first_delay_s=0.5))
    due: float | None = None  # after an exit: when its restart may go (back-off)


class Supervisor:
    """Owns the engine process and the front ends: starts them, restarts them, stops them in order."""

    def __init__(
        self, env: dict[str, str], workers: int, options: dict[str, Any], drain_timeout_s: float, engines: int = 1
    ) -> None:
        self.workers, self.options, self.drain_timeout_s = workers, options, drain_timeout_s
        self.context = multiprocessing.get_context("spawn")
        self.directory = Path(tempfile.mkdtemp(prefix="elastic-engine-"))  # mode 0700: ours alone
        self.engine_paths = [self.directory / f"engine-{i}.sock" for i in range(engines)]
        sockets = ",".join(str(path) for path in self.engine_paths)
        self.env = {**env, "ELASTIC_ENGINE": "process", "ELASTIC_ENGINE_SOCKET": sockets}
        self.stopping = threading.Event()
        self.engines = [_Slot(f"engine {i}") for i in range(engines)]
        self.fronts = [_Slot(f"front end {i}") for i in range(workers)]

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; blocking."""
        import uvicorn

        listeners = []
        for path in self.engine_paths:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(64)  # front ends that connect while the engine (re)starts wait in this backlog
            listeners.append(listener)
        http = uvicorn.Config(APP, factory=True, **self.options).bind_socket()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        log.info("supervisor %d: %d engine process(es), %d front ends", os.getpid(), len(self.engines), self.workers)
        try:
            while not self.stopping.is_set():
                for index, (slot, listener) in enumerate(zip(self.engines, listeners, strict=True)):
                    self._keep(slot, lambda restarted, i=index, s=listener: self._start_engine(s, i, restarted))
                for slot in self.fronts:
                    self._keep(slot, lambda _: self._start_front(http))
                self.stopping.wait(0.2)
        finally:
            self._stop()
            for listener in listeners:
                listener.close()
            http.close()
            shutil.rmtree(self.directory, ignore_errors=True)
        return 0

    def _keep(self, slot: _Slot, start: Any) -> None:
        """Start `slot`'s process if it is not running and its back-off has passed."""
        process, now = slot.process, time.monotonic()
        if process is not None and process.is_alive():
            return
        if process is not None and slot.due is None:  # it just exited: say so once, and plan its restart
            log.error("%s (pid %d) exited with code %s; restarting it", slot.name, process.pid, process.exitcode)
            _forget_metrics(process.pid)
            slot.due = now + slot.policy.child_exited()  # back-off grows while it keeps exiting within stable_s
            return
        if slot.due is not None and now < slot.due:
            return
        slot.process, slot.due = start(process is not None), None
        slot.policy.child_ready()  # from here its running time counts towards a stable run

    def _start_engine(self, listener: socket.socket, index: int, restarted: bool) -> Any:
        threads = engine_threads(int(self.env.get("ELASTIC_TORCH_THREADS") or 0), self.workers, len(self.engines))
        env = {**self.env, "ELASTIC_ENGINE_INDEX": str(index), "ELASTIC_TORCH_THREADS": str(threads)}
        process = self.context.Process(
            target=host_main, args=(listener, env, restarted), name=f"elastic-engine-{index}", daemon=True
        )
        # its metrics reach /metrics through the front ends (service.worker.host): it writes no metric files
        multiproc = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        try:
            process.start()
        finally:
            if multiproc is not None:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc
        return process

    def _start_front(self, http: socket.socket) -> Any:
        process = self.context.Process(target=_front_end, args=(self.options, self.env, http), name="elastic-front")
        process.start()
        return process

    def _stop(self) -> None:
        """Front ends first (each drains: new requests get 503, held ones are answered), then the engine."""
        fronts = [s.process for s in self.fronts if s.process is not None and s.process.is_alive()]
        for process in fronts:
            process.terminate()
        for process in fronts:
            process.join(self.drain_timeout_s + 15.0)
            if process.is_alive():
                log.warning("front end %d did not stop; killing it", process.pid)
                process.kill()
        engines = [s.process for s in self.engines if s.process is not None and s.process.is_alive()]
        for engine in engines:
            engine.terminate()  # it answers what is queued (nothing, once the front ends are gone), then ends
        for engine in engines:
            engine.join(30.0)
            if engine.is_alive():
                engine.kill()


def _forget_metrics(pid: int) -> None:
    """A front end that died without its shutdown: its live gauges must leave the merged /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)
