"""Smoke test: `elastic bench load` against the real server counts what the server counted.

Correctness of the counting, not speed: every request is one of ok / rejected / error, the exit
histogram adds up, accuracy matches the labels, and the met/missed answers agree with the
server's own `elastic_requests_total` counter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench_images import make_image_folder
from e2e_server import REPO_ROOT, ServerProcess, serve
from prometheus_client.parser import text_string_to_metric_families

IMPOSSIBLE_MS = 0.001  # no answer can be this fast: every one must be counted as late
GENEROUS_MS = 30_000.0

pytestmark = pytest.mark.slow  # a real server and `elastic bench load` in a subprocess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # late answers instead of refusals, so that the met/missed counting is exercised
    with serve(env={"ELASTIC_REJECT_UNMEETABLE": "false"}) as running:
        yield running


def outcomes(base_url: str) -> dict[str, float]:
    """elastic_requests_total summed over exits, by outcome."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(base_url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "elastic_requests_total":
                outcome = sample.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def bench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "elastic_anytime.elastic_cli.main", "bench", "load", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def records(point: dict) -> list[dict]:
    return point["records"]


def test_counts_labels_and_server_counters_agree(server: ServerProcess, tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:3], per_class=2)
    info = httpx.get(server.url + "/v1/model", timeout=10).json()
    final = info["num_exits"] - 1
    before = outcomes(server.url)
    out = tmp_path / "points.json"
    result = bench(
        "--url", server.url + "/v1/classify", "--data", str(data), "--images", "6",
        "--budgets", f"none,{IMPOSSIBLE_MS},{GENEROUS_MS}", "--concurrency", "1,3", "--requests", "7",
        "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    points = json.loads(out.read_text())["points"]
    assert [(p["concurrency"], p["budget_ms"]) for p in points] == [
        (c, b) for c in (1, 3) for b in (None, IMPOSSIBLE_MS, GENEROUS_MS)
    ]
    for p in points:
        assert p["sent"] == 7 == len(records(p))
        assert p["ok"] + p["rejected"] + p["errors"] == p["sent"]
        assert p["errors"] == 0, p["error_examples"]
        assert p["rejected"] == 0  # 3 clients never fill a 256-deep queue
        assert sum(p["exit_histogram"].values()) == p["ok"]
        for r in records(p):
            assert classes[r["label"]] in classes[:3]
        expected_accuracy = sum(r["class_id"] == r["label"] for r in records(p)) / p["ok"]
        assert p["accuracy"] == pytest.approx(expected_accuracy)
        if p["budget_ms"] == IMPOSSIBLE_MS:
            # exit 0 always answers; nothing is on time, on either side
            assert p["exit_histogram"] == {"0": 7}
            assert p["server_hit_rate"] == 0.0 and p["client_hit_rate"] == 0.0
        else:
            # no budget and a generous one both run to the final exit and are on time
            assert p["exit_histogram"] == {str(final): 7}
            assert p["server_hit_rate"] == 1.0
        if p["budget_ms"] == GENEROUS_MS:
            assert p["client_hit_rate"] == 1.0
    # the markdown table on stdout has one row per point
    assert len([line for line in result.stdout.splitlines() if line.startswith("| closed")]) == len(points)

    after = outcomes(server.url)
    answered = [r for p in points for r in records(p)]
    assert after["met"] - before.get("met", 0) == sum(r["budget_met"] is True for r in answered)
    assert after["missed"] - before.get("missed", 0) == sum(r["budget_met"] is False for r in answered)


def test_raw_bodies_reach_the_raw_route_with_their_budget(
    server: ServerProcess, tmp_path: Path, classes: list[str]
) -> None:
    data = make_image_folder(tmp_path / "data", classes[:2], per_class=2)
    out = tmp_path / "raw.json"
    result = bench(
        "--url", server.url + "/v1/classify", "--data", str(data), "--images", "4", "--raw",
        "--budgets", f"{IMPOSSIBLE_MS},none", "--requests", "4", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    impossible, unbounded = json.loads(out.read_text())["points"]
    final = httpx.get(server.url + "/v1/model", timeout=10).json()["num_exits"] - 1
    assert impossible["ok"] == 4 and impossible["exit_histogram"] == {"0": 4}  # the query's budget was read
    assert unbounded["ok"] == 4 and unbounded["exit_histogram"] == {str(final): 4}
    assert all(r["budget_met"] is False for r in impossible["records"])
    assert server.log().count("POST /v1/classify/raw?budget_ms=0.001 HTTP/1.1") == 4  # the access log


def test_refused_requests_count_as_rejected(tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:2], per_class=2)
    out = tmp_path / "refused.json"
    with serve() as default_server:  # refuses budgets that exit 0 cannot meet (422 budget_too_small)
        before = outcomes(default_server.url)
        result = bench(
            "--url", default_server.url + "/v1/classify", "--data", str(data),
            "--budgets", f"{IMPOSSIBLE_MS},{GENEROUS_MS}", "--requests", "5", "--json", str(out),
        )  # fmt: skip
        after = outcomes(default_server.url)
    assert result.returncode == 0, result.stderr
    refused, served = json.loads(out.read_text())["points"]
    assert refused["rejected"] == 5 and refused["ok"] == 0 and refused["errors"] == 0
    assert {r["status"] for r in records(refused)} == {422}
    assert served["ok"] == 5 and served["rejected"] == 0 and served["server_hit_rate"] == 1.0
    assert after["rejected"] - before.get("rejected", 0) == 5


def test_open_loop_sends_exactly_the_bounded_count(server: ServerProcess, tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:2], per_class=2)
    out = tmp_path / "open.json"
    result = bench(
        "--url", server.url + "/v1/classify", "--data", str(data), "--mode", "open", "--rates", "40",
        "--budgets", str(GENEROUS_MS), "--requests", "10", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (point,) = json.loads(out.read_text())["points"]
    assert point["mode"] == "open" and point["rate"] == 40
    assert point["sent"] == 10 and point["ok"] + point["rejected"] + point["errors"] == 10
    assert point["ok"] == 10 and point["server_hit_rate"] == 1.0
    assert point["stopped_by_time"] is False


def test_time_limit_stops_a_point_before_its_count(server: ServerProcess, tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:1], per_class=1)
    out = tmp_path / "limited.json"
    result = bench(
        "--url", server.url + "/v1/classify", "--data", str(data), "--mode", "open", "--rates", "5",
        "--requests", "1000", "--time-limit", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (point,) = json.loads(out.read_text())["points"]
    assert point["stopped_by_time"] is True
    assert 0 < point["sent"] < 30  # about 5 per second for one second


def test_non_loopback_target_is_refused_before_sending(tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:1], per_class=1)
    result = bench("--url", "http://10.1.2.3:8000/v1/classify", "--data", str(data), "--requests", "1")
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_bursts_and_curl_like_requests_count_what_the_server_counted(
    server: ServerProcess, tmp_path: Path, classes: list[str]
) -> None:
    data = make_image_folder(tmp_path / "data", classes[:2], per_class=4)
    common = ("--url", server.url + "/v1/classify", "--data", str(data), "--images", "8")
    before = outcomes(server.url)
    bursts = bench(*common, "--mode", "burst", "--burst-sizes", "4", "--bursts", "2", "--burst-interval", "0.1",
                   "--budgets", str(GENEROUS_MS), "--json", str(tmp_path / "bursts.json"))  # fmt: skip
    curl = bench(*common, "--mode", "sparse", "--new-connection", "--rates", "20", "--requests", "3",
                 "--budgets", "none", "--json", str(tmp_path / "curl.json"))  # fmt: skip
    after = outcomes(server.url)
    assert bursts.returncode == 0, bursts.stderr
    assert curl.returncode == 0, curl.stderr
    (burst,) = json.loads((tmp_path / "bursts.json").read_text())["points"]
    (sparse,) = json.loads((tmp_path / "curl.json").read_text())["points"]
    assert (burst["shape"], burst["burst_size"], burst["bursts"]) == ("burst", 4, 2)
    assert burst["sent"] == 8 == burst["ok"] == len(records(burst)) and burst["refusals"] == {}
    assert burst["client_hit_rate_sent"] == 1.0 and burst["goodput_rps"] > 0
    assert (sparse["shape"], sparse["connection"], sparse["sent"], sparse["ok"]) == ("curl", "new per request", 3, 3)
    for p in (burst, sparse):  # the labels are those of the images sent
        assert p["accuracy"] == pytest.approx(sum(r["class_id"] == r["label"] for r in records(p)) / p["ok"])
        assert p["gap_ms"]["p50"] is not None
    assert after["met"] - before.get("met", 0) == 8 + 3
    assert "| burst | 4 at once ×2, every 0.1 s |" in bursts.stdout
    assert "| curl | 20/s, new per request | none |" in curl.stdout


def test_hey_points_read_the_server_side_from_its_counters(
    server: ServerProcess, tmp_path: Path, classes: list[str]
) -> None:
    if shutil.which("hey") is None:
        pytest.skip("hey is not installed (apt-get install hey)")
    data = make_image_folder(tmp_path / "data", classes[:1], per_class=1)
    out = tmp_path / "hey.json"
    result = bench(
        "--url", server.url + "/v1/classify", "--data", str(data), "--images", "1", "--mode", "hey", "--raw",
        "--concurrency", "2", "--hey-qps", "50", "--requests", "8", "--budgets", str(GENEROUS_MS), "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (point,) = json.loads(out.read_text())["points"]
    assert (point["shape"], point["concurrency"], point["qps"], point["offered_rps"]) == ("hey", 2, 50.0, 100.0)
    assert point["sent"] == point["ok"] == 8 == len(records(point))
    assert point["server"]["met"] == 8 and point["server_hit_rate"] == 1.0 and point["client_hit_rate_sent"] == 1.0
    assert point["command"].startswith("hey -n 8 -c 2 -t 10 -q 50 -m POST -T image/jpeg -D body.bin -o csv")
    assert "| hey | hey -c 2 -q 50 (100/s) |" in result.stdout
