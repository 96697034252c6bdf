"""Live: a real Prometheus scrapes our real server while requests with different budgets arrive; then every
PromQL expression of the Grafana dashboard, of the alert rules and of the prometheus-adapter example runs
through Prometheus's HTTP API. A panel query must return series; an alert expression must be valid and,
without its threshold, compute a value; the rules must evaluate healthy; `promtool check metrics` must
find nothing to say about our /metrics."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from deploy_helpers import (
    SCRAPE_INTERVAL_S,
    adapter_queries,
    metric_names,
    panel_queries,
    png_bytes,
    require_binary,
    rule_queries,
    rules,
)

BUDGETS_MS = (0.5, 3.0, 8.0, 1000.0)  # from "only exit 0 fits" (missed on this CPU) to "the final exit"
TICKS = 8  # bursts of len(BUDGETS_MS) concurrent requests...
TICK_S = 0.75  # ...this far apart: traffic spans ~6 s = several scrapes, so rate() sees increases
_THRESHOLD = re.compile(r"^(?P<lhs>.+?)\s*(?:>|<|>=|<=|==|!=)\s*(?P<threshold>[-+0-9.eE]+)\s*$", re.DOTALL)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}\n→ {body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"]


def _classify(base: str, seed: int, budget_ms: float) -> dict[str, Any]:
    files = {"image": (f"img{seed}.png", png_bytes(seed), "image/png")}
    response = httpx.post(f"{base}/v1/classify", files=files, data={"budget_ms": str(budget_ms)}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def traffic(elastic_server: str, prometheus: str) -> list[dict[str, Any]]:
    """Answers to the requests sent, once Prometheus has scraped all of them."""
    _wait_for(prometheus, 'up{job="elastic"} == 1', lambda result: len(result) == 1, "first scrape")
    answers = []
    with ThreadPoolExecutor(len(BUDGETS_MS)) as pool:
        for tick in range(TICKS):
            started = time.monotonic()
            seeds = range(tick * len(BUDGETS_MS), (tick + 1) * len(BUDGETS_MS))
            answers += pool.map(lambda args: _classify(elastic_server, *args), zip(seeds, BUDGETS_MS, strict=True))
            time.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
    answered = f'sum(elastic_requests_total{{outcome=~"met|missed"}}) == {len(answers)}'
    _wait_for(prometheus, answered, lambda result: len(result) == 1, f"a scrape showing all {len(answers)} answers")
    time.sleep(2 * SCRAPE_INTERVAL_S)  # one more sample after the last increase, and a rule evaluation
    return answers


def _wait_for(prometheus: str, expr: str, done: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(query(prometheus, expr)):
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus never showed {what} ({expr}) within {timeout} s")


def test_different_budgets_were_answered_at_different_exits(traffic: list[dict[str, Any]]) -> None:
    exits = {answer["exit"] for answer in traffic}
    num_exits = traffic[0]["num_exits"]
    assert {0, num_exits - 1} <= exits, exits
    assert any(answer["budget_met"] for answer in traffic)


@pytest.mark.parametrize(("panel", "expr"), panel_queries(), ids=[name for name, _ in panel_queries()])
def test_dashboard_query_returns_series(prometheus: str, traffic: list[dict[str, Any]], panel: str, expr: str) -> None:
    assert query(prometheus, expr), f"{panel}: no series for {expr}"


def test_request_rate_panel_shows_every_exit_that_answered(prometheus: str, traffic: list[dict[str, Any]]) -> None:
    (expr,) = [expr for name, expr in panel_queries() if name.startswith("Request rate by exit")]
    rates = {series["metric"]["exit"]: float(series["value"][1]) for series in query(prometheus, expr)}
    for exit_index in {answer["exit"] for answer in traffic}:
        assert rates.get(str(exit_index), 0) > 0, (exit_index, rates)


@pytest.mark.parametrize(("alert", "expr"), rule_queries(), ids=[name for name, _ in rule_queries()])
def test_alert_expression_is_valid_and_computes_a_value(
    prometheus: str, traffic: list[dict[str, Any]], alert: str, expr: str
) -> None:
    query(prometheus, expr)  # valid as written (whether it fires now does not matter)
    match = _THRESHOLD.match(expr)
    assert match, f"{alert}: write alerts as '<value> <op> <threshold>' so this test can check the value"
    assert query(prometheus, match["lhs"]), f"{alert}: {match['lhs']} has no series, the alert could never fire"


def test_rules_are_loaded_and_evaluate_healthy(prometheus: str, traffic: list[dict[str, Any]]) -> None:
    response = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()
    loaded = {rule["name"]: rule for group in response["data"]["groups"] for rule in group["rules"]}
    assert set(loaded) == {rule.get("alert") or rule["record"] for rule in rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule['health']} {rule.get('lastError', '')}"


def test_the_target_is_up_and_target_down_does_not_fire(prometheus: str, traffic: list[dict[str, Any]]) -> None:
    assert [float(s["value"][1]) for s in query(prometheus, 'up{job="elastic"}')] == [1.0]
    (expr,) = [expr for name, expr in rule_queries() if name == "ElasticTargetDown"]
    assert query(prometheus, expr) == []


@pytest.mark.parametrize(("metric", "expr"), adapter_queries(), ids=[name for name, _ in adapter_queries()])
def test_prometheus_adapter_example_query_returns_series(
    prometheus: str, traffic: list[dict[str, Any]], metric: str, expr: str
) -> None:
    assert query(prometheus, expr), f"{metric}: no series for {expr}"


def test_every_metric_the_queries_read_is_exposed(prometheus: str, traffic: list[dict[str, Any]]) -> None:
    # `x or vector(0)` and absent series hide typos from the checks above; this one does not
    exposed = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    families = {re.sub(r"_(bucket|sum|count|created|total)$", "", name) for name in exposed} | exposed
    for name, expr in panel_queries() + rule_queries() + adapter_queries():
        missing = metric_names(expr) - families
        assert not missing, f"{name}: {sorted(missing)} not exposed by the server"


def test_promtool_check_metrics_is_clean(elastic_server: str, traffic: list[dict[str, Any]]) -> None:
    text = httpx.get(f"{elastic_server}/metrics", timeout=10).text
    assert "elastic_exit_latency_seconds_bucket" in text
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )
