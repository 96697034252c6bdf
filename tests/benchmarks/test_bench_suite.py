"""Smoke test: `elastic bench suite` runs end to end (in-process bound, our server, oracle, report).

Tiny sizes and no LitServe peer (the peer needs the `bench` extra); this checks that the pipeline
starts and stops its server, counts consistently and writes the report, not the numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from bench_images import make_image_folder
from e2e_server import REPO_ROOT

pytestmark = pytest.mark.slow  # `elastic bench suite` in a subprocess, which starts a real server


def test_suite_writes_results_report_and_plots(tmp_path: Path, classes: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", classes[:4], per_class=6)
    out, assets, doc = tmp_path / "out", tmp_path / "docs" / "benchmarks", tmp_path / "BENCHMARKS.md"
    command = [
        sys.executable, "-m", "elastic_anytime.elastic_cli.main", "bench", "suite", "--size", "smoke", "--no-peer",
        "--threads", "1", "--data", str(data), "--out", str(out), "--doc", str(doc), "--assets", str(assets),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    assert results == json.loads((assets / "results.json").read_text())
    assert results["size"] == "smoke" and results["images"] == 24
    exits = results["lower_bound"]["exits"]
    assert [e["exit"] for e in exits] == list(range(len(exits)))
    serving = results["lower_bound"]["serving"]  # the serving runner's bound, which our targets use
    assert [e["exit"] for e in serving["exits"]] == [e["exit"] for e in exits]
    assert serving["precision"] in ("fp32", "bf16") and "correct" not in serving
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["batch1_ms"]["p50"] > 0 for e in serving["exits"])
    elastic = results["elastic"]
    assert elastic["settings"]["max_batch_size"] == 8  # the server ran with the suite's batching
    points = [elastic["full_depth_c1"], elastic["full_depth_c1_raw"], elastic["saturation"],
              *elastic["budget_sweep_c1"], *elastic["load_sweep"]]  # fmt: skip
    for p in points:
        assert p["ok"] + p["rejected"] + p["errors"] == p["sent"] > 0
        assert sum(p["exit_histogram"].values()) == p["ok"]
        assert sum(p["late_exits"].values()) == round(p["ok"] * (1 - p["server_hit_rate"]))
    # held to each exit by a compute budget of that exit's MFLOPs, the server answered from that exit
    fixed_exits = elastic["fixed_exits_c1"]
    assert [f["exit"] for f in fixed_exits] == list(range(len(exits)))
    for f in fixed_exits:
        assert f["ok"] > 0 and f["exit_histogram"] == {str(f["exit"]): f["ok"]}
    assert all("fixed_exit_fit" in p and "fixed_exit_accuracy" in p for p in elastic["budget_sweep_c1"])
    # no budget means full depth: the fixed-depth baseline really ran to the final exit
    for c1 in (elastic["full_depth_c1"], elastic["full_depth_c1_raw"]):  # multipart, and the raw image body
        assert c1["exit_histogram"] == {str(len(exits) - 1): c1["ok"]} and c1["ok"] == c1["sent"]
    assert {p["load"] for p in elastic["load_sweep"]} == {0.5, 2.0}
    assert len(results["fixed_depth"]["load"]) == 2 * 2  # loads × budgets
    assert results["targets"][0]["name"].startswith("full-depth p50")
    # the four of the benchmark issue (hit rate twice), the traffic shapes, then a front end's memory
    assert len(results["targets"]) == 5 + 6 + 1
    assert all(t["met"] in (True, False, None) for t in results["targets"])

    # the traffic shapes, at smoke size (benchmarks/sizes.py)
    shapes = elastic["shapes"]
    sparse, curl = shapes["sparse"]
    assert (sparse["shape"], sparse["sent"], sparse["connection"]) == ("sparse", 10, "keep-alive")
    assert (curl["shape"], curl["sent"], curl["connection"]) == ("curl", 5, "new per request")
    assert [(b["burst_size"], b["budget_ms"], b["sent"]) for b in shapes["bursts"]] == [
        (16, 10.0, 16), (16, 50.0, 16), (32, 10.0, 32), (32, 50.0, 32),
    ]  # fmt: skip
    base = shapes["closed_baseline"]
    assert base["budget_ms"] is None and base["concurrency"] == 8 and base["ok"] == base["sent"] == 48
    assert [(p["budget_ms"], p["sent"]) for p in shapes["closed"]] == [(8.0, 48)]
    hey = shapes["hey"]
    if shutil.which("hey"):
        assert hey["skipped"] is None and [(p["budget_ms"], p["sent"]) for p in hey["points"]] == [(30.0, 64)]
        (point,) = hey["points"]
        # the server's side of a hey point is its own counters: every request counted once
        assert sum(point["server"].values()) == point["sent"] - point["errors"]
        assert point["server"]["rejected"] == point["rejected"]
    else:
        assert hey["points"] == [] and "not installed" in hey["skipped"]
        warnings.warn("hey is not installed: the suite's hey phase was skipped (apt-get install hey)", stacklevel=1)
    for p in [*shapes["sparse"], *shapes["bursts"], *hey["points"], base, *shapes["closed"]]:
        assert p["ok"] + p["rejected"] + p["errors"] == p["sent"]
        assert p["errors"] == 0, p["error_examples"]
        assert sum(p["refusals"].values()) == p["rejected"]
        assert set(p["refusals"]) <= {"overloaded", "queue_full", "unavailable", "budget_too_small", "http_503",
                                      "http_422", "http_429"}  # fmt: skip
        assert (p["refused_client_ms"]["p99"] is None) == (p["rejected"] == 0)
        if p["budget_ms"] is not None:
            inside = round(p["client_hit_rate_sent"] * p["sent"])
            assert p["goodput_rps"] == pytest.approx(inside / p["duration_s"])
        if p["shape"] != "hey" and p["ok"]:  # hey reads no body: no per-request server latency
            assert p["gap_ms"]["p50"] is not None and p["gap_ms"]["p50"] > -0.5  # the client sees more than the server

    # `--workers 1` and `--workers 2` (benchmarks/front_ends.py): memory by role, then two points each
    fronts = elastic["front_ends"]
    assert [p["workers"] for p in fronts] == [1, 2]
    for p in fronts:
        memory = p["memory"]
        assert memory["front_ends"] == p["workers"] and memory["engine_mb"] > memory["front_end_max_mb"] > 0
        assert memory["total_mb"] >= memory["engine_mb"] + memory["front_ends"] * 0.5 * memory["front_end_max_mb"]
        assert p["saturation"]["ok"] == p["saturation"]["sent"] > 0 and p["budgeted"]["sent"] > 0

    text = doc.read_text()
    for heading in (
        "## Machine",
        "## Targets",
        "## Lower bound",
        "## Accuracy under a budget",
        "## Hit rate under load",
        "## Traffic shapes",
        "## Front ends sharing one engine",
    ):
        assert heading in text
    assert "Reduced run" in text
    steady = results["machine"]  # how steady the machine was: the speed probe at both ends, the stolen share
    assert len(steady["speed_probe_ms"]) == 2 and all(ms > 0 for ms in steady["speed_probe_ms"])
    assert steady["steal_share"] is None or 0.0 <= steady["steal_share"] <= 1.0
    assert "speed probe (2M pure-Python adds, best of 3)" in text
    assert "late: exits (worst)" in text and "Fixed exit on the server" in text
    for name in ("accuracy_vs_budget.png", "hit_rate_vs_load.png"):
        png = assets / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(docs/benchmarks/{name})" in text  # linked relative to the document

    # the report re-renders from the results alone, identically
    again = tmp_path / "AGAIN.md"
    command = [sys.executable, "-m", "elastic_anytime.elastic_cli.main", "bench", "report", str(out / "results.json"),
               "--doc", str(again), "--assets", str(assets)]  # fmt: skip
    assert subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=300).returncode == 0
    assert again.read_text() == text
