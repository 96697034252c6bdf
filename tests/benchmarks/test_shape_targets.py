"""The traffic-shape targets score the points they name, met or not (never failing the run), and the report
renders them; results without the phase (older results.json files) get neither."""

from __future__ import annotations

from typing import Any

import pytest

from elastic_anytime.benchmarks.loadgen import Record
from elastic_anytime.benchmarks.report_shapes import refusals_text, shapes_table, traffic_shapes
from elastic_anytime.benchmarks.shape_targets import evaluate_shape_targets
from elastic_anytime.benchmarks.stats import summarize


def ok(client_ms: float, server_ms: float | None = None, met: bool = True) -> Record:
    server = client_ms - 0.5 if server_ms is None else server_ms
    return Record(sample=0, label=0, status=200, client_ms=client_ms, class_id=0, exit=0, latency_ms=server,
                  budget_met=met)  # fmt: skip


def refused(client_ms: float = 1.0, code: str = "overloaded") -> Record:
    return Record(sample=0, label=0, status=503 if code != "budget_too_small" else 422, client_ms=client_ms,
                  error_code=code)  # fmt: skip


def point(shape: str, records: list[Record], budget: float | None, duration_s: float = 1.0, **how: Any) -> dict:
    return {**summarize(records, duration_s, budget), "shape": shape, **how}


def burst(size: int, budget: float, records: list[Record]) -> dict:
    return point("burst", records, budget, burst_size=size, bursts=3, interval_s=1.0)


def good_shapes() -> dict[str, Any]:
    return {
        "sparse": [
            point("sparse", [ok(3.0)] * 299 + [ok(6.0)], 5.0, 60.0, rate=5.0, connection="keep-alive"),
            point("curl", [ok(3.5)] * 20, 4.0, 10.0, rate=2.0, connection="new per request"),
        ],
        "bursts": [
            burst(16, 10.0, [ok(8.0)] * 6 + [refused(1.5)] * 10),
            burst(16, 25.0, [ok(20.0)] * 48),
            burst(32, 25.0, [ok(20.0)] * 40 + [refused(1.0)] * 8),  # not a burst that must fit
            burst(32, 50.0, [ok(40.0)] * 96),
        ],
        "hey": {
            "points": [
                {
                    **point("hey", [ok(20.0)] * 2990 + [refused(1.0, "http_503")] * 2, 30.0, 9.4),
                    "concurrency": 16,
                    "qps": 20.0,
                    "offered_rps": 320.0,
                    "server": {"met": 2990.0, "missed": 0.0, "rejected": 2.0, "error": 0.0},
                    "command": "hey -n 3000 -c 16 -q 20 ...",
                },
            ],
            "skipped": None,
        },
        "closed_baseline": {**point("closed", [ok(10.0)] * 100, None, 1.0), "concurrency": 8, "mode": "closed"},
        "closed": [
            {**point("closed", [ok(7.0)] * 85 + [ok(9.0)] * 5, 8.0, 1.0), "concurrency": 8, "mode": "closed"},
            {**point("closed", [ok(12.0)] * 95, 25.0, 1.0), "concurrency": 8, "mode": "closed"},
        ],
    }


def by_goal(shapes: dict[str, Any]) -> list[tuple[bool | None, str]]:
    return [(t["met"], t["measured"]) for t in evaluate_shape_targets(shapes)]


def test_all_shapes_meeting_their_goals() -> None:
    assert by_goal(good_shapes()) == [
        (True, "20 of 20"),
        (True, "0 refused, 1 late of 300"),
        (True, "0 refused, worst 100.0% inside"),
        (True, "0 late, refusals p99 1.50 ms"),
        (True, "0.1% refused, 99.9% inside"),
        (True, "85%"),  # 85 answers inside 8 ms per second against fixed depth's 100/s
    ]


def test_each_shape_missing_its_goal() -> None:
    shapes = good_shapes()
    shapes["sparse"][1] = point("curl", [ok(3.5)] * 19 + [refused(2.0, "budget_too_small")], 4.0, rate=2.0,
                                connection="new per request")  # fmt: skip
    shapes["sparse"][0] = point("sparse", [ok(3.0)] * 298 + [ok(6.0)] * 2, 5.0, 60.0, rate=5.0, connection="x")
    shapes["bursts"][3] = burst(32, 50.0, [ok(40.0)] * 95 + [refused(1.0)])
    shapes["bursts"][0] = burst(16, 10.0, [ok(8.0, met=False)] + [ok(8.0)] * 5 + [refused(3.0)] * 10)
    shapes["hey"]["points"][0]["client_hit_rate_sent"] = 0.98
    shapes["closed"][0] = {**point("closed", [ok(7.0)] * 79, 8.0), "concurrency": 8}
    targets = evaluate_shape_targets(shapes)
    assert [t["met"] for t in targets] == [False] * 6
    assert targets[0]["measured"] == "19 of 20" and "budget_too_small 1" in targets[0]["detail"]
    assert targets[1]["measured"] == "0 refused, 2 late of 300"
    assert targets[2]["measured"] == "1 refused, worst 99.0% inside"
    assert targets[3]["measured"] == "1 late, refusals p99 3.00 ms"
    assert targets[5]["measured"] == "79%" and "budget 8 ms" in targets[5]["detail"]


def test_a_refusal_on_the_sparse_point_misses_even_without_late_answers() -> None:
    shapes = good_shapes()
    shapes["sparse"][0] = point("sparse", [ok(3.0)] * 299 + [refused()], 5.0, 60.0, rate=5.0, connection="x")
    (met, measured) = by_goal(shapes)[1]
    assert met is False and measured == "1 refused, 0 late of 300"


def test_a_skipped_hey_phase_is_not_scored_and_says_why() -> None:
    shapes = good_shapes()
    shapes["hey"] = {"points": [], "skipped": "hey is not installed"}
    hey = evaluate_shape_targets(shapes)[4]
    assert hey["met"] is None and hey["detail"] == "hey is not installed"
    assert "> **hey**: hey is not installed." in traffic_shapes({"elastic": {"shapes": shapes}})


def test_results_without_the_phase_get_no_shape_targets_nor_section() -> None:
    assert evaluate_shape_targets(None) == [] and evaluate_shape_targets({}) == []
    assert traffic_shapes({"elastic": {}}) == ""


def test_the_section_has_a_row_per_point_with_refusals_by_reason() -> None:
    shapes = good_shapes()
    text = traffic_shapes({"elastic": {"shapes": shapes}})
    assert text.startswith("## Traffic shapes")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| shape")]
    assert len(rows) == 2 + 4 + 1 + 1 + 2  # sparse, bursts, hey, the fixed-depth baseline, closed with budgets
    assert "| burst | 16 at once ×3, every 1 s | 10 | 16 | 6 | 10 overloaded |" in text
    assert "hey -c 16 -q 20 (320/s)" in text and "`hey -n 3000 -c 16 -q 20 ...`" in text
    assert "| closed | closed c=8 | none |" in text


@pytest.mark.parametrize(
    ("refusals", "rejected", "text"),
    [({}, 0, "0"), ({"overloaded": 3}, 3, "3 overloaded"),
     ({"overloaded": 2, "queue_full": 1}, 3, "3 (overloaded 2, queue_full 1)")],
)  # fmt: skip
def test_refusals_text(refusals: dict[str, int], rejected: int, text: str) -> None:
    assert refusals_text({"refusals": refusals, "rejected": rejected}) == text


def test_the_table_prints_any_summary() -> None:
    row = shapes_table([point("sparse", [ok(3.0), refused()], 5.0, rate=5.0, connection="keep-alive")])
    assert "| sparse | 5/s, keep-alive | 5 | 2 | 1 | 1 overloaded | 0 | 100.00% | 50.00% |" in row
