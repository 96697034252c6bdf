"""ELASTIC_ENGINE=process: the real server with its model in a child process answers like the default
one (exits, budgets, top-k, metrics, the live profile, hot reload), replaces a child that dies while
staying alive, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_server import ServerProcess, children, inference_child, serve
from test_serving import JPEG, PNG, answer, classify_json, classify_multipart, classify_raw

from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.front_costs import MIN_LONE_EVIDENCE, SKIP_FIRST

TOKEN = "process-mode-admin-token"


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"ELASTIC_ENGINE": "process", "ELASTIC_ADMIN_TOKEN": TOKEN}
    with serve(env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def model(client: httpx.Client) -> dict:
    return client.get("/v1/model").json()


def test_the_model_runs_in_a_child_process(server: ServerProcess) -> None:
    assert b"multiprocessing" in Path(f"/proc/{inference_child(server.process.pid)}/cmdline").read_bytes()


def test_answers_every_way_at_every_exit(client: httpx.Client, model: dict) -> None:
    last = model["num_exits"] - 1
    for body in (answer(classify_multipart(client, PNG, "image/png")), answer(classify_json(client, JPEG)),
                 answer(classify_raw(client, JPEG))):  # fmt: skip
        assert body["exit"] == last and body["stopped_by"] == "final" and body["budget_met"] is True
        assert body["label"] == model["classes"][body["class_id"]]
    costs = [e["anytime_mflops"] for e in model["exits"]]
    for k in range(model["num_exits"]):
        body = answer(classify_multipart(client, budget_mflops=costs[k], budget_ms=10_000))
        assert body["exit"] == k and body["mflops"] <= costs[k]
    top = answer(classify_json(client, min_confidence=0.1, top_k=3))
    assert top["exit"] == 0 and top["stopped_by"] == "confident" and len(top["top_k"]) == 3


def test_budgets_below_exit_0_are_refused(client: httpx.Client) -> None:
    response = classify_multipart(client, budget_ms=0.001)
    assert response.status_code == 422 and response.json()["error"] == "budget_too_small"


def test_profile_and_metrics_come_from_the_child(client: httpx.Client, model: dict) -> None:
    # one at a time (lone requests): the lone hand-off counts after the first few and then on enough evidence
    for _ in range(SKIP_FIRST + MIN_LONE_EVIDENCE):
        answer(classify_multipart(client))
    info = client.get("/v1/model").json()
    assert info["ready"] is True
    assert info["serving"]["handoff_ms"] > 0  # the way back from the child, measured by the handler
    # calibration and served requests ran in the child; the parent's mirror shows them
    assert all(exit_info["latency"]["1"]["samples"] >= 1 for exit_info in info["exits"])
    text = client.get("/metrics").text
    last = model["num_exits"] - 1
    count = re.search(rf'^elastic_exit_latency_seconds_count\{{exit="{last}"\}} (\S+)', text, re.M)
    assert count and float(count.group(1)) >= 1
    for name in ("elastic_stage_latency_seconds_bucket", "elastic_batch_size_bucket", "elastic_queue_wait_seconds"):
        assert re.search(rf"^{name}", text, re.M), name


def test_hot_reload_switches_the_child(client: httpx.Client, model: dict) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bad = client.post("/v1/admin/reload", json={"checkpoint": "/nonexistent"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_checkpoint"  # checked in the parent
    response = client.post("/v1/admin/reload", json={"checkpoint": str(default_checkpoint())}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["num_exits"] == model["num_exits"]
    assert answer(classify_multipart(client))["exit"] == model["num_exits"] - 1  # the child serves on


def test_sigterm_ends_the_child_too() -> None:
    with serve(env={"ELASTIC_ENGINE": "process"}) as running:
        child = children(running.process.pid)
        assert child
        with httpx.Client(base_url=running.url, timeout=30.0) as c:
            assert answer(classify_multipart(c))["budget_met"] is True
        # uvicorn re-raises the signal once it has shut down cleanly: -15 is the graceful exit
        assert running.stop() in (0, -signal.SIGTERM)
        log = running.log()
        assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    # the inference process is joined before the server exits; multiprocessing's resource tracker ends
    # itself on seeing the server's end of its pipe close, a moment after the server is gone
    for pid in child:
        for _ in range(200):
            if gone(pid):
                break
            time.sleep(0.05)
        assert gone(pid), Path(f"/proc/{pid}/cmdline").read_bytes()


def threads_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of `pid`."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def test_cpu_placement_pins_the_server_and_its_inference_process() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to split between the server and its inference process")
    first, second = cpus[:2]
    env = {"ELASTIC_ENGINE": "process", "ELASTIC_CPU_PLACEMENT": f"{first}:{second}", "ELASTIC_TORCH_THREADS": "1"}
    with serve(env=env) as running, httpx.Client(base_url=running.url, timeout=30.0) as c:
        info = c.get("/v1/model").json()
        assert info["serving"]["cpu_placement"] == {"server": str(first), "inference": str(second)}
        assert answer(classify_raw(c))["exit"] == info["num_exits"] - 1
        assert threads_cpus(running.process.pid) == {frozenset({first})}
        assert threads_cpus(inference_child(running.process.pid)) == {frozenset({second})}


def test_the_thread_engine_still_serves_and_reloads() -> None:
    # ELASTIC_ENGINE=thread (the default until process mode was measured): no child, same answers
    with serve(env={"ELASTIC_ENGINE": "thread", "ELASTIC_ADMIN_TOKEN": TOKEN}) as running:
        assert not children(running.process.pid)
        with httpx.Client(base_url=running.url, timeout=30.0) as c:
            info = c.get("/v1/model").json()
            assert answer(classify_raw(c))["exit"] == info["num_exits"] - 1
            reload = c.post("/v1/admin/reload", json={"checkpoint": str(default_checkpoint())},
                            headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert reload.status_code == 200, reload.text
            assert answer(classify_multipart(c, budget_mflops=info["exits"][0]["anytime_mflops"]))["exit"] == 0


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.02)
    pytest.fail(f"not within {timeout:.0f}s: {what}")


class Load:
    """A few client threads sending classify requests until stopped: (time, status, body, headers) of each answer;
    a request without an answer within its timeout is recorded as such (it must not happen)."""

    def __init__(self, url: str, threads: int = 3, pause_s: float = 0.02) -> None:
        self.url, self.pause_s = url, pause_s
        self.results: list[tuple[float, int, dict, httpx.Headers]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15.0) as c:
            while not self._stop.is_set():
                try:
                    response = classify_multipart(c)
                except httpx.HTTPError as err:  # a hang (timeout) or a reset: no answer
                    self.failures.append(f"{type(err).__name__}: {err}")
                    continue
                self.results.append((time.monotonic(), response.status_code, response.json(), response.headers))
                time.sleep(self.pause_s)


def test_a_killed_inference_process_is_replaced_while_the_server_stays_alive() -> None:
    """Self-healing. This replaces the premise of an earlier test here: that a killed inference process
    fails liveness so that Kubernetes restarts the pod. Now the server replaces its child by itself: the
    requests it held and those arriving meanwhile get 503 + Retry-After, readiness is red with the reason,
    liveness stays green, and serving resumes within seconds. Liveness fails only after 3 failed restarts
    within 60 s (tests/service/worker/test_restart_policy.py drives that rule on a fake clock)."""
    with serve(env={"ELASTIC_ENGINE": "process"}) as running, httpx.Client(base_url=running.url, timeout=10) as c:
        child = inference_child(running.process.pid)
        assert metric(c.get("/metrics").text, "elastic_engine_restarts_total") == 0
        live: list[int] = []
        with Load(running.url) as load:
            until(lambda: len(load.results) >= 10, 30, "answers before the kill")
            os.kill(child, signal.SIGKILL)
            killed = time.monotonic()
            red = until(lambda: (r := c.get("/readyz")).status_code == 503 and r, 5, "readiness turns red")
            live.append(c.get("/healthz").status_code)
            detail = red.json()["detail"]
            assert detail == "the inference process exited (signal 9, SIGKILL); restarting it, attempt 1", detail

            def resumed() -> bool:
                live.append(c.get("/healthz").status_code)
                return any(at > killed and status == 200 for at, status, _, _ in load.results[-5:])

            until(resumed, 10, "serving resumes within 10 s of the kill")
            resumed_after = next(at for at, status, _, _ in load.results if at > killed and status == 200) - killed
            time.sleep(0.5)
        print(f"serving resumed {resumed_after:.2f}s after the kill")
        assert not load.failures, load.failures[:5]
        assert {status for _, status, _, _ in load.results} == {200, 503}
        refusals = [(body, headers) for _, status, body, headers in load.results if status == 503]
        for body, headers in refusals:
            assert body["error"] == "unavailable" and "Retry-After" in headers, body
            assert body["detail"].startswith("the inference process"), body  # not "warming up"
        assert any("is restarting after it exited (signal 9, SIGKILL)" in body["detail"] for body, _ in refusals)
        assert set(live) == {200}, live
        assert c.get("/readyz").json() == {"status": "ready"}
        assert inference_child(running.process.pid) != child
        assert metric(c.get("/metrics").text, "elastic_engine_restarts_total") == 1
        info = c.get("/v1/model").json()  # the mirror of the profile holds the new child's calibration
        assert info["ready"] is True and all(e["latency"]["1"]["samples"] >= 1 for e in info["exits"])
        assert "Traceback" not in running.log()


def test_sigterm_while_the_inference_process_restarts_leaves_nothing_behind() -> None:
    # stopping restarts nothing, and ends a replacement that is still warming up at once
    with serve(env={"ELASTIC_ENGINE": "process"}) as running, httpx.Client(base_url=running.url, timeout=10) as c:
        os.kill(inference_child(running.process.pid), signal.SIGKILL)
        until(lambda: "restarting" in c.get("/readyz").text, 5, "the restart begins")
        assert c.get("/healthz").status_code == 200
        replacement = until(lambda: [p for p in children(running.process.pid) if not gone(p)], 5, "a replacement")
        started = time.monotonic()
        assert running.stop() in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15, "the stop waited for a warming-up replacement"
        log = running.log()
        assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    for pid in replacement:
        until(lambda pid=pid: gone(pid), 10, f"process {pid} ends")


def test_a_killed_server_leaves_no_inference_process_behind() -> None:
    # SIGKILL gives the server no time to stop its child: the child sees its pipe close and ends itself
    with serve(env={"ELASTIC_ENGINE": "process"}) as running:
        child = inference_child(running.process.pid)
        running.process.kill()
        running.process.wait(10)
        for _ in range(200):
            if gone(child):
                break
            time.sleep(0.05)
        assert gone(child), "the inference process outlived its server"
