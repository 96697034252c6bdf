"""Live: with ELASTIC_WORKERS=2 (prometheus-client multiprocess mode) /metrics merges both workers and stays
clean for `promtool check metrics`: what a scrape of the image run with several workers sees."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
from deploy_helpers import png_bytes, require_binary

REQUESTS = 12


def _value(text: str, series: str, labels: str = "") -> float:
    """Sum of the samples of `series` whose label set contains `labels` (a substring like 'outcome="met"')."""
    pattern = rf"^{re.escape(series)}(\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for lbl, v in re.findall(pattern, text, re.MULTILINE) if labels in lbl)


def _classify(base: str, seed: int) -> None:
    # a fresh connection each time, so that both workers get requests; a worker still calibrating answers
    # 503 with Retry-After, which a client honours
    deadline = time.monotonic() + 60
    while True:
        files = {"image": (f"img{seed}.png", png_bytes(seed), "image/png")}
        response = httpx.post(f"{base}/v1/classify", files=files, data={"budget_ms": "1000"}, timeout=30)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(float(response.headers.get("retry-after", "1")))
    assert response.status_code == 200, response.text


def test_metrics_of_two_workers_are_merged_and_clean(elastic_server_two_workers: str) -> None:
    base = elastic_server_two_workers
    for seed in range(REQUESTS):
        _classify(base, seed)
    text = httpx.get(f"{base}/metrics", timeout=10).text
    # every answer counted once, whichever worker gave it
    assert _value(text, "elastic_exit_latency_seconds_count") == REQUESTS
    answered = _value(text, "elastic_requests_total", 'outcome="met"')
    answered += _value(text, "elastic_requests_total", 'outcome="missed"')
    assert answered == REQUESTS
    assert "elastic_model_info{" in text
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
