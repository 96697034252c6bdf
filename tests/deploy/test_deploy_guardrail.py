"""Live: the accuracy guardrail on the real server (ELASTIC_GUARDRAIL_SHARE=1: every early answer is re-run to
the final exit while idle), scraped by a real Prometheus with our alert rules. CIFAR-10 test images keep exit 0
near its calibrated agreement with the final exit; the same images shifted (inverted, heavy noise) make it fall
far below, and ElasticExitAgreementLow fires for exit 0."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from deploy_helpers import rule_queries
from PIL import Image

from elastic_anytime.models.checkpoint import read_metadata
from elastic_anytime.models.pretrained import default_checkpoint

SAMPLE = Path(__file__).resolve().parent / "cifar10_test_sample"
POOL = 32  # service.engine.guardrail.POOL_SIZE: a chunk of requests no larger is never dropped from the pool
EXIT_0_MFLOPS = 50.0  # between exit 0 (42) and exit 1 (80): every answer stops at exit 0, by compute
NOISE_COPIES = 3
log = logging.getLogger(__name__)
_COUNTER = re.compile(r'^elastic_exit_agreement_total\{agree="(true|false)",exit="0"\} (\S+)$', re.MULTILINE)


def _normal() -> list[bytes]:
    return [path.read_bytes() for path in sorted(SAMPLE.glob("*.jpg"))]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _shifted() -> list[bytes]:
    """The same images inverted, and with Gaussian noise of 64 grey levels (three draws each)."""
    pixels = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in _normal()]
    rng = np.random.default_rng(0)
    noisy = [np.clip(p + rng.normal(0, 64, p.shape), 0, 255) for _ in range(NOISE_COPIES) for p in pixels]
    return [_png(255 - p) for p in pixels] + [_png(p.astype(np.uint8)) for p in noisy]


def _agreement_counts(server: str) -> tuple[float, float]:
    """(agreed, re-run) at exit 0, from /metrics."""
    counts = dict(_COUNTER.findall(httpx.get(f"{server}/metrics", timeout=10).text))
    agreed, disagreed = float(counts.get("true", 0)), float(counts.get("false", 0))
    return agreed, agreed + disagreed


def _feed(server: str, images: list[bytes]) -> tuple[float, int]:
    """Send `images` at exit 0's compute budget, in chunks the pool holds, each re-run before the next is
    sent; returns the share of them the final exit agreed with, and how many were re-run."""
    agreed0, total0 = _agreement_counts(server)
    for start in range(0, len(images), POOL):
        for data in images[start : start + POOL]:
            files = {"image": ("image", data, "application/octet-stream")}
            budget = {"budget_mflops": EXIT_0_MFLOPS}
            response = httpx.post(f"{server}/v1/classify", files=files, data=budget, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["exit"] == 0 and response.json()["stopped_by"] == "compute"
        deadline = time.monotonic() + 60
        while _agreement_counts(server)[1] < total0 + min(start + POOL, len(images)):
            assert time.monotonic() < deadline, "the guardrail did not re-run the early answers while idle"
            time.sleep(0.1)
    agreed, total = _agreement_counts(server)
    return (agreed - agreed0) / (total - total0), int(total - total0)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}\n→ {body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"]


def _wait_for(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"never saw {what} within {timeout} s"
            return result
        time.sleep(0.5)


@pytest.fixture(scope="module")
def expected() -> float:
    """Exit 0's calibrated agreement over all images: the baseline of a compute-stopped answer."""
    return read_metadata(default_checkpoint())["agreement"]["exits"][0]["all"]


@pytest.fixture(scope="module")
def fed(guardrail_server: str, guardrail_prometheus: str) -> dict[str, tuple[float, int]]:
    """Normal then shifted traffic, once Prometheus has seen the counters at zero."""
    up = 'elastic_exit_agreement_total{job="elastic", exit="0"}'
    _wait_for("a scrape of the agreement counters", lambda: _query(guardrail_prometheus, up))
    result = {"normal": _feed(guardrail_server, _normal()), "shifted": _feed(guardrail_server, _shifted())}
    time.sleep(3)  # a scrape after the last re-run, and a rule evaluation
    log.info("exit 0 agreed with the final exit on %.3f of %d normal and %.3f of %d shifted images",
             *result["normal"], *result["shifted"])  # fmt: skip
    return result


def test_every_early_answer_is_rerun_and_counted(fed: dict[str, tuple[float, int]]) -> None:
    assert fed["normal"][1] == len(_normal())
    assert fed["shifted"][1] == len(_shifted())


def test_agreement_stays_near_its_calibration_on_normal_images_and_falls_on_shifted_ones(
    fed: dict[str, tuple[float, int]], expected: float
) -> None:
    normal, shifted = fed["normal"][0], fed["shifted"][0]
    assert normal > expected - 0.10, (normal, expected)  # 64 CIFAR-10 test images: 0.73 in fp32
    assert shifted <= expected - 0.10, (shifted, expected)
    assert shifted < normal - 0.2, (normal, shifted)


def test_the_server_shows_its_share_and_the_calibrated_agreement(guardrail_server: str, expected: float) -> None:
    text = httpx.get(f"{guardrail_server}/metrics", timeout=10).text
    assert f'elastic_exit_expected_agreement{{exit="0"}} {expected}' in text
    assert httpx.get(f"{guardrail_server}/v1/model", timeout=10).json()["serving"]["guardrail_share"] == 1.0


def test_the_alert_expression_fires_for_exit_0_on_a_real_prometheus(
    guardrail_prometheus: str, fed: dict[str, tuple[float, int]], expected: float
) -> None:
    (expr,) = [expr for name, expr in rule_queries() if name == "ElasticExitAgreementLow"]
    result = _wait_for("the alert expression fire", lambda: _query(guardrail_prometheus, expr))
    assert [series["metric"]["exit"] for series in result] == ["0"]
    assert float(result[0]["value"][1]) >= 0.10

    def firing() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{guardrail_prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ElasticExitAgreementLow" and a["state"] == "firing"]

    (alert,) = _wait_for("ElasticExitAgreementLow firing", firing)
    assert alert["labels"]["exit"] == "0" and alert["labels"]["job"] == "elastic"
