"""The four targets of the benchmark issue, measured against their goals from one suite run, then the
traffic-shape targets (benchmarks/shape_targets.py)."""

from __future__ import annotations

from typing import Any

from elastic_anytime.benchmarks.front_ends import front_end_targets
from elastic_anytime.benchmarks.shape_targets import evaluate_shape_targets

LATENCY_RATIO_MAX = 1.15
THROUGHPUT_RATIO_MIN = 2.0
HIT_RATE_LOW_LOAD = 0.999
LOW_LOAD_MAX = 0.8
HIT_RATE_OVERLOAD = 0.99
OVERLOAD_MIN = 2.0
ACCURACY_SLACK = 0.01
MIN_SCORED_ANSWERS = 100  # answers a point needs for its hit rate to count towards a target


def _target(name: str, goal: str, value: float | None, met: bool | None, measured: str, detail: str) -> dict[str, Any]:
    return {"name": name, "goal": goal, "value": value, "met": met, "measured": measured, "detail": detail}


def serving_exits(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-exit in-process numbers of the serving runner (our lower bound); older results: the plain model."""
    lower = results["lower_bound"]
    return lower["serving"]["exits"] if "serving" in lower else lower["exits"]


def _latency(results: dict[str, Any]) -> dict[str, Any]:
    # each server against its own arithmetic: ours against the serving runner, LitServe against plain fp32
    inproc = serving_exits(results)[-1]["batch1_ms"]["p50"]
    plain = results["lower_bound"]["exits"][-1]["batch1_ms"]["p50"]
    ours = results["elastic"]["full_depth_c1"]["client_ms"]["p50"]
    ratio = ours / inproc if ours and inproc else None
    detail = f"client p50 {ours:.2f} ms vs in-process serving runner {inproc:.2f} ms" if ratio else "no answers"
    if ours and plain:
        detail += f" ({ours / plain:.2f}× the plain fp32 model's {plain:.2f} ms)"
    raw = results["elastic"].get("full_depth_c1_raw", {}).get("client_ms", {}).get("p50")
    if raw and inproc:
        detail += f"; raw image body (/v1/classify/raw) {raw:.2f} ms = {raw / inproc:.2f}×"
    peer = results["peers"].get("litserve", {}).get("c1", {}).get("client_ms", {}).get("p50")
    if peer and plain:
        detail += f"; LitServe {peer / plain:.2f}× the plain fp32 model"
    return _target(
        "full-depth p50 at concurrency 1 / in-process decode+forward (same arithmetic)",
        f"≤ {LATENCY_RATIO_MAX}×",
        ratio,
        None if ratio is None else ratio <= LATENCY_RATIO_MAX,
        "-" if ratio is None else f"{ratio:.2f}×",
        detail,
    )


def _throughput(results: dict[str, Any]) -> dict[str, Any]:
    ours = results["elastic"]["saturation"]["throughput_rps"]
    peer = results["peers"].get("litserve_batched", {}).get("saturation", {}).get("throughput_rps")
    ratio = ours / peer if ours and peer else None
    detail = f"{ours:.0f}/s vs LitServe batched {peer:.0f}/s" if ratio else "peer not measured"
    return _target(
        "saturation throughput at full depth / LitServe batched",
        f"≥ {THROUGHPUT_RATIO_MIN}×",
        ratio,
        None if ratio is None else ratio >= THROUGHPUT_RATIO_MIN,
        "-" if ratio is None else f"{ratio:.2f}×",
        detail,
    )


def eligible_budget_ms(results: dict[str, Any]) -> float:
    """The smallest budget the hit-rate targets apply to: exit 0 at p99 plus the server overhead."""
    return serving_exits(results)[0]["batch1_ms"]["p99"] + results["server_overhead_ms"]


def _worst_hit(points: list[dict[str, Any]]) -> tuple[float | None, str]:
    # a point where nearly everything was refused says nothing about a 99 % goal: 3 answers, 0 in time, is
    # not a hit rate of 0 (nor would 3 of 3 be 100 %); such points are listed, not scored
    answered = [p for p in points if p.get("server_hit_rate") is not None]
    scored = [p for p in answered if p["ok"] >= MIN_SCORED_ANSWERS]
    few = len(answered) - len(scored)
    note = f"; {few} points with under {MIN_SCORED_ANSWERS} answers not scored" if few else ""
    if not scored:
        return None, "no eligible points" + note
    worst = min(scored, key=lambda p: p["server_hit_rate"])
    where = f"budget {worst['budget_ms']:g} ms at " + (f"{worst['load']:g}× saturation" if "load" in worst else "c=1")
    # the goal holds at every point; with 1000 requests a point tells 99.9 % from 99.8 % poorly, so the
    # detail adds all the scored answers together (the target itself stays the worst point)
    answers = sum(p["ok"] for p in scored)
    late = sum(round(p["ok"] * (1 - p["server_hit_rate"])) for p in scored)
    pooled = f"{100 * (1 - late / answers):.2f}% ({late} late of {answers} answers)"
    return worst["server_hit_rate"], f"worst: {where} over {len(scored)} points{note}; all together: {pooled}"


def _hit_rates(results: dict[str, Any]) -> list[dict[str, Any]]:
    floor = eligible_budget_ms(results)
    elastic = results["elastic"]
    eligible = [p for p in elastic["load_sweep"] if p["budget_ms"] >= floor]
    low = [p for p in eligible if p["load"] <= LOW_LOAD_MAX]
    low += [p for p in elastic["budget_sweep_c1"] if p["budget_ms"] >= floor]
    over = [p for p in eligible if p["load"] >= OVERLOAD_MIN]
    low_rate, low_detail = _worst_hit(low)
    over_rate, over_detail = _worst_hit(over)
    sent = sum(p["sent"] for p in over)
    rejected = sum(p["rejected"] for p in over)
    if sent:
        over_detail += f"; rejected {rejected}/{sent} ({100 * rejected / sent:.1f}%)"
    suffix = f" (budgets ≥ {floor:.1f} ms)"
    return [
        _hit_target(f"up to {LOW_LOAD_MAX:.0%} of saturation" + suffix, HIT_RATE_LOW_LOAD, low_rate, low_detail),
        _hit_target(
            f"at {OVERLOAD_MIN:g}× overload, accepted requests" + suffix, HIT_RATE_OVERLOAD, over_rate, over_detail
        ),
    ]


def _hit_target(where: str, goal: float, rate: float | None, detail: str) -> dict[str, Any]:
    name = (
        "answers inside budget_ms (server-side) " if "overload" not in where else "answers inside budget_ms "
    ) + where
    measured = "-" if rate is None else f"{100 * rate:.2f}%"
    return _target(name, f"≥ {100 * goal:g}%", rate, None if rate is None else rate >= goal, measured, detail)


def _accuracy(results: dict[str, Any]) -> dict[str, Any]:
    rows = [
        p
        for p in results["elastic"]["budget_sweep_c1"]
        if p["oracle_accuracy"] is not None and p["accuracy"] is not None
    ]
    if not rows:
        return _target(
            "served accuracy vs oracle at each budget", "≥ oracle − 1 point", None, None, "-", "no budget fits"
        )
    worst = min(rows, key=lambda p: p["accuracy"] - p["oracle_accuracy"])
    gap = worst["accuracy"] - worst["oracle_accuracy"]
    return _target(
        "served accuracy vs oracle at each budget (concurrency 1)",
        "≥ oracle − 1 point",
        gap,
        gap >= -ACCURACY_SLACK,
        f"{100 * gap:+.1f} points",
        f"worst at budget {worst['budget_ms']:g} ms: {100 * worst['accuracy']:.1f}% vs "
        f"{100 * worst['oracle_accuracy']:.1f}% over {len(rows)} budgets",
    )


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    shapes = evaluate_shape_targets(results["elastic"].get("shapes"))
    fronts = front_end_targets(results["elastic"].get("front_ends"))
    return [_latency(results), _throughput(results), *_hit_rates(results), _accuracy(results), *shapes, *fronts]
