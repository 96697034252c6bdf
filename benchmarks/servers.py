"""Start and stop the servers under test as subprocesses bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    name: str
    base_url: str
    process: subprocess.Popen
    log_path: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def classify_url(self) -> str:
        return f"{self.base_url}/v1/classify"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the server's own process group (LitServe forks workers), then SIGKILL."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(grace_s)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    name: str,
    command: list[str],
    port: int,
    ready_path: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    cwd: Path | None = None,
) -> ServerProcess:
    """Launch `command` (in `cwd`) and wait until GET `ready_path` answers 200 (or the process dies)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        cwd=cwd,
    )
    server = ServerProcess(name, f"http://{HOST}:{port}", process, log_path, log_file)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"{name} exited with {process.returncode} before it was ready; see {log_path}")
        try:
            if httpx.get(server.base_url + ready_path, timeout=2.0).status_code == 200:
                log.info("%s ready at %s", name, server.base_url)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"{name} not ready after {timeout_s:.0f}s; see {log_path}")


def elastic_command(checkpoint: Path, port: int) -> list[str]:
    cli = "elastic_anytime.elastic_cli.main"
    return [sys.executable, "-m", cli, "serve", str(checkpoint), "--host", HOST, "--port", str(port)]


def litserve_command(
    checkpoint: Path, port: int, threads: int, max_batch_size: int, batch_timeout_s: float, device: str = "cpu"
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "elastic_anytime.benchmarks.litserve_peer",
        str(checkpoint),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--max-batch-size",
        str(max_batch_size),
        "--batch-timeout",
        str(batch_timeout_s),
        "--accelerator",
        "cuda" if device.startswith("cuda") else "cpu",
    ]
