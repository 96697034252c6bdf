"""`elastic serve --workers 2` (service.worker.supervisor): two HTTP front ends in front of one engine process.
Their requests share batches, a hot reload made through one front end reaches the other, the front ends
hold no torch, and a killed engine or front end comes back while the others keep their place."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from e2e_server import ServerProcess, children, serve
from PIL import Image
from reliability_helpers import encode, tiny_checkpoint

from elastic_anytime.models.pretrained import default_checkpoint

pytestmark = pytest.mark.slow

TOKEN = "shared-engine-token-0123"
TINY_CLASSES = ["red", "green", "blue"]
PNG = encode(Image.new("RGB", (40, 30), (200, 40, 40)), "PNG")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"ELASTIC_ADMIN_TOKEN": TOKEN, "ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "5"}
    with serve(env=env, args=("--workers", "2")) as running:
        yield running


def processes(server: ServerProcess) -> tuple[int, list[int]]:
    """(the engine process, the front ends) among the supervisor's children: the engine is the one with torch."""
    engine, fronts = [], []
    for pid in children(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"resource_tracker" in command:
                continue
            (engine if holds_torch(pid) else fronts).append(pid)
        except FileNotFoundError:  # a killed process that the supervisor has just reaped
            continue
    assert len(engine) == 1, (engine, fronts)
    return engine[0], sorted(fronts)


def holds_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def classify(url: str, **fields: str) -> httpx.Response:
    """On a connection of its own, so that either front end may take it."""
    return httpx.post(f"{url}/v1/classify", files={"image": ("a.png", PNG, "image/png")}, data=fields, timeout=60)


def metric(text: str, series: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(series)} (\S+)$", text, re.M))


def wait_until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_two_front_ends_without_torch_and_one_engine(server: ServerProcess) -> None:
    engine, fronts = processes(server)
    assert len(fronts) == 2 and holds_torch(engine)
    assert not holds_torch(server.process.pid)  # nor does the supervisor
    # the device the engine resolved ("auto" → "cpu" here), as each front end describes it
    assert all(httpx.get(f"{server.url}/v1/model", timeout=10).json()["device"] == "cpu" for _ in range(6))


def test_requests_from_both_front_ends_share_batches(server: ServerProcess) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: classify(server.url), range(160)))
    assert all(a.status_code == 200 for a in answers), {a.status_code: a.text for a in answers}
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    batches = metric(text, "elastic_batch_front_ends_count")
    alone = metric(text, 'elastic_batch_front_ends_bucket{le="1.0"}')
    assert batches > 0 and alone < batches, text  # some batch held requests of both front ends
    # every answer counted once in the merged /metrics, whichever front end gave it
    assert metric(text, 'elastic_requests_total{exit="none",outcome="error"}') == 0


def test_a_reload_through_one_front_end_reaches_the_other(server: ServerProcess, tmp_path: Path) -> None:
    tiny = tiny_checkpoint(tmp_path / "tiny", TINY_CLASSES)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    reloaded = httpx.post(f"{server.url}/v1/admin/reload", json={"checkpoint": str(tiny)}, headers=headers, timeout=120)
    assert reloaded.status_code == 200, reloaded.text
    try:
        # each front end reports the model it describes (one elastic_model_info series per process)
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        serving = re.findall(r"^elastic_model_info\{([^}]*)\} 1\.0$", text, re.M)
        assert len(serving) == 2 and all('model="tiny"' in labels for labels in serving), serving
        for _ in range(12):
            answer = classify(server.url)
            assert answer.status_code == 200 and answer.json()["label"] in TINY_CLASSES, answer.text
            assert answer.json()["num_exits"] == 3
    finally:
        back = httpx.post(
            f"{server.url}/v1/admin/reload",
            json={"checkpoint": str(default_checkpoint())},
            headers=headers,
            timeout=120,
        )
        assert back.status_code == 200, back.text


def test_a_killed_engine_process_comes_back_and_the_front_ends_reconnect(server: ServerProcess) -> None:
    engine, fronts = processes(server)
    os.kill(engine, signal.SIGKILL)
    started = time.monotonic()
    seen = set()

    def serving() -> bool:
        status = classify(server.url, budget_ms="1000").status_code
        seen.add(status)
        return status == 200 and all(classify(server.url).status_code == 200 for _ in range(6))

    wait_until(serving, timeout=60)
    assert seen <= {200, 503}, seen  # answered or refused with the reason, never an error or a hang
    new_engine, same_fronts = processes(server)
    assert new_engine != engine and same_fronts == fronts  # the front ends stayed; they reconnected
    assert time.monotonic() - started < 60


def test_a_killed_front_end_is_replaced(server: ServerProcess) -> None:
    engine, fronts = processes(server)
    os.kill(fronts[0], signal.SIGKILL)
    wait_until(lambda: len(processes(server)[1]) == 2 and fronts[0] not in processes(server)[1], timeout=60)
    # the new one warms up beside the other, which serves meanwhile; then both answer
    wait_until(lambda: all(classify(server.url).status_code == 200 for _ in range(8)), timeout=60)
    assert processes(server)[0] == engine  # the engine kept serving the other front end meanwhile


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_two_engines_share_the_requests_of_two_front_ends() -> None:
    """`--engines 2` (one per GPU on a GPU node; here two on the CPU): the front ends spread the requests by
    their queues, so both engines compute, and each front end answers while either engine restarts."""
    env = {"ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "5", "ELASTIC_IDLE_REFRESH_MS": "0",
           "ELASTIC_GUARDRAIL_SHARE": "0"}  # fmt: skip
    with serve(env=env, args=("--workers", "2", "--engines", "2")) as running:
        pids = [p for p in children(running.process.pid) if holds_torch(p)]
        assert len(pids) == 2
        before = [cpu_seconds(p) for p in pids]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: classify(running.url), range(160)))
        assert all(a.status_code == 200 for a in answers), {a.status_code: a.text for a in answers}
        spent = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        assert min(spent) > 0.15 * max(spent), spent  # both engines took a real share of the work

        os.kill(pids[0], signal.SIGKILL)  # the other engine serves meanwhile: no request goes unanswered
        statuses = {classify(running.url).status_code for _ in range(20)}
        assert statuses <= {200, 503} and 200 in statuses, statuses
