"""Live fixtures for the deploy tests: our real server (`elastic serve`, the image's entrypoint command, started
by the e2e tests' `serve`) and a real `prometheus` binary scraping it, both on loopback with free ports and
temp directories."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from deploy_helpers import REPO, RULES, SCRAPE_INTERVAL_S, free_port, require_binary

sys.path.insert(0, str(REPO / "tests" / "e2e"))  # the serving tests' server fixture, shared
from e2e_server import serve

SERVER_START_TIMEOUT_S = 180  # model load + warm-up + calibration on a busy 2-core CI machine


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode} before {url} answered:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} not ready after {timeout:.0f} s:\n{_tail(log)}")


# as the image would run it, on CPU and with a short calibration (this machine has 2 shared cores). Budgets
# below exit 0 are answered late rather than refused (422), so that the miss and slack panels and the miss
# alert get late answers to show whatever the timing; refusals are counted under the same metric
SERVER_ENV = {
    "ELASTIC_DEVICE": "cpu",
    "ELASTIC_TORCH_THREADS": "1",
    "ELASTIC_WARMUP_RUNS": "1",
    "ELASTIC_CALIBRATION_RUNS": "5",
    "ELASTIC_REJECT_UNMEETABLE": "false",
}


@pytest.fixture(scope="module")
def elastic_server() -> Iterator[str]:
    with serve(env=SERVER_ENV, args=["--no-access-log"], ready_timeout=SERVER_START_TIMEOUT_S) as server:
        yield server.url


@pytest.fixture(scope="module")
def elastic_server_two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**SERVER_ENV, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics"))}
    args = ["--no-access-log", "--workers", "2"]
    with serve(env=env, args=args, ready_timeout=SERVER_START_TIMEOUT_S) as server:
        yield server.url


@pytest.fixture(scope="module")
def prometheus(elastic_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping `elastic_server` every second, with our alert rules loaded."""
    with prometheus_scraping(elastic_server, tmp_path_factory.mktemp("prometheus")) as base:
        yield base


# the guardrail re-runs every early answer (tests/deploy/test_deploy_guardrail.py)
GUARDRAIL_ENV = {**SERVER_ENV, "ELASTIC_GUARDRAIL_SHARE": "1"}


@pytest.fixture(scope="module")
def guardrail_server() -> Iterator[str]:
    with serve(env=GUARDRAIL_ENV, args=["--no-access-log"], ready_timeout=SERVER_START_TIMEOUT_S) as server:
        yield server.url


@pytest.fixture(scope="module")
def guardrail_prometheus(guardrail_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping `guardrail_server` every second, with our alert rules loaded."""
    with prometheus_scraping(guardrail_server, tmp_path_factory.mktemp("prometheus")) as base:
        yield base


@contextmanager
def prometheus_scraping(target: str, tmp: Path) -> Iterator[str]:
    """A real Prometheus scraping `target` every second with our alert rules loaded, in `tmp`; yields its URL."""
    binary = require_binary("prometheus")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [str(RULES)],
        # the job name of deploy/prometheus/prometheus.yml: the rules select job="elastic"
        "scrape_configs": [
            {
                "job_name": "elastic",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                "static_configs": [{"targets": [target.removeprefix("http://")]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(f"{base}/-/ready", process, log, 60)
        yield base
    finally:
        _stop(process)
