"""Start the real server as a subprocess for end-to-end tests (imported as `e2e_server`).

`serve(...)` is reusable by any test directory (deploy, bench, reliability):

    with serve(env={"ELASTIC_MAX_BATCH_SIZE": "4"}) as server:
        httpx.get(server.url + "/v1/model")
        server.process  # the Popen, e.g. to send SIGTERM yourself; server.log() for its output

It runs `python -m elastic_anytime.elastic_cli.main serve CHECKPOINT --host 127.0.0.1 --port P` on a free port, waits
until `/readyz` answers 200, and at the end sends SIGTERM and waits for the process to exit (SIGKILL
after `stop_timeout`). Output goes to a file, never a pipe that could fill up and stall the server.
From another test directory: `sys.path` gets tests/e2e (see tests/e2e/conftest.py) or import by path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from elastic_anytime.models.pretrained import default_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
# few threads: the test machine has 2 cores shared with other work
DEFAULT_ENV = {"ELASTIC_TORCH_THREADS": "1"}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: drains accepted requests), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@contextlib.contextmanager
def serve(
    checkpoint: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    ready_timeout: float = 180.0,
    stop_timeout: float = 30.0,
) -> Iterator[ServerProcess]:
    """Start `elastic serve` in a subprocess, wait for readiness, yield it, stop it with SIGTERM."""
    port = free_port()
    command = [
        sys.executable, "-m", "elastic_anytime.elastic_cli.main", "serve", str(checkpoint or default_checkpoint()),
        "--host", "127.0.0.1", "--port", str(port), *args,
    ]  # fmt: skip
    full_env = {**os.environ, **DEFAULT_ENV, **(env or {})}
    log_file = tempfile.NamedTemporaryFile(prefix="elastic-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, Path(log_file.name))
    try:
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        server.stop(stop_timeout)
        log_file.close()


def _wait_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode} before ready:\n{server.log()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f}s:\n{server.log()[-4000:]}")


def children(pid: int) -> list[int]:
    """The child processes of `pid`."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def inference_child(pid: int) -> int:
    """The spawned inference process of server `pid` (multiprocessing also starts its resource tracker beside it)."""
    (child,) = [c for c in children(pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
    return child
