"""The hit-rate targets score only points with enough answers, whichever way a small point leans, and
say how all scored answers did together."""

from __future__ import annotations

from elastic_anytime.benchmarks.targets import MIN_SCORED_ANSWERS, _worst_hit


def point(budget: float, ok: int, rate: float) -> dict:
    return {"budget_ms": budget, "load": 0.5, "ok": ok, "server_hit_rate": rate}


def test_points_with_too_few_answers_are_listed_not_scored() -> None:
    points = [point(3, 3, 0.0), point(4, MIN_SCORED_ANSWERS, 0.98), point(5, 900, 0.999)]
    rate, detail = _worst_hit(points)
    assert rate == 0.98 and "budget 4 ms" in detail and "1 points with under 100 answers not scored" in detail


def test_a_small_perfect_point_does_not_count_either() -> None:
    rate, detail = _worst_hit([point(3, 5, 1.0), point(8, 500, 0.95)])
    assert rate == 0.95 and "budget 8 ms" in detail


def test_nothing_to_score() -> None:
    rate, detail = _worst_hit([point(3, 2, 0.5)])
    assert rate is None and detail.startswith("no eligible points")


def test_the_detail_adds_the_scored_points_together_but_the_worst_point_decides() -> None:
    points = [point(3, 1000, 0.998), point(5, 1000, 1.0), point(8, 3, 0.0)]  # 2 late of 2000 scored answers
    rate, detail = _worst_hit(points)
    assert rate == 0.998
    assert "all together: 99.90% (2 late of 2000 answers)" in detail
