"""Targets for the traffic shapes (benchmarks/traffic.py): what a user sending such traffic should get.

Scored from one suite run like the other targets, reported met or not; none of them fails the run. Each
applies to the points of the run that match it, so a reduced run (`--size smoke`) scores the same
targets on fewer requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPARSE_MAX_LATE = 1  # late at the client, out of the sparse point's requests
BURST_FITS_MS = {16: 25.0, 32: 50.0}  # burst size → the smallest budget the whole burst should fit
BURST_HIT_RATE = 0.99
TIGHT_BURST_MS = (10.0, 20.0)  # budgets a burst cannot all fit: refuse at once, never answer late
REFUSAL_MAX_MS = 2.0  # p99 of refused requests' client latency
HEY_SHAPE = (16, 20.0, 30.0)  # hey -c, -q and budget_ms of the scored point
HEY_MAX_REFUSED = 0.01
HEY_HIT_RATE = 0.99
GOODPUT_MIN_BUDGET_MS = 8.0
GOODPUT_RATIO_MIN = 0.8  # of the fixed-depth server's throughput at the same concurrency


def _target(name: str, goal: str, value: float | None, met: bool | None, measured: str, detail: str) -> dict[str, Any]:
    return {"name": name, "goal": goal, "value": value, "met": met, "measured": measured, "detail": detail}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _reasons(point: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in point["refusals"].items()) or "none"


def in_time_at_client(point: dict[str, Any]) -> int:
    """Answers inside the budget at the client, out of all the point sent."""
    return round((point["client_hit_rate_sent"] or 0.0) * point["sent"])


def late_at_server(point: dict[str, Any]) -> int:
    """Answers the server itself called late (`budget_met` false)."""
    return sum(point.get("late_exits", {}).values())


def _sparse(shapes: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((p for p in shapes.get("sparse", []) if p["shape"] == kind), None)


def _curl(shapes: dict[str, Any]) -> dict[str, Any]:
    p = _sparse(shapes, "curl")
    name = "idle server, a new connection per request (curl-like): requests answered"
    if p is None:
        return _target(name, "all answered", None, None, "-", "not measured")
    name = f"idle server, a new connection per request (curl-like), {p['rate']:g}/s at budget {p['budget_ms']:g} ms"
    detail = (
        f"refused: {_reasons(p)}; errors {p['errors']}; inside the budget at the client {_pct(p['client_hit_rate'])} "
        f"of answers; client p99 {_ms(p['client_ms']['p99'])}"
    )
    met = p["sent"] > 0 and p["ok"] == p["sent"]
    share = p["ok"] / p["sent"] if p["sent"] else None
    return _target(name, "all answered", share, met, f"{p['ok']} of {p['sent']}", detail)


def _sparse_late(shapes: dict[str, Any]) -> dict[str, Any]:
    p = _sparse(shapes, "sparse")
    goal = f"0 refused, ≤ {SPARSE_MAX_LATE} late at the client"
    if p is None:
        return _target("sparse requests on one keep-alive connection", goal, None, None, "-", "not measured")
    late = p["sent"] - p["rejected"] - in_time_at_client(p)  # answered late, or not at all
    name = f"sparse {p['rate']:g}/s on one keep-alive connection at budget {p['budget_ms']:g} ms"
    detail = (
        f"refused: {_reasons(p)}; late by the server's clock {late_at_server(p)}; client p99 "
        f"{_ms(p['client_ms']['p99'])}; client − server p99 {_ms(p['gap_ms']['p99'])}"
    )
    met = p["rejected"] == 0 and late <= SPARSE_MAX_LATE
    return _target(name, goal, float(late), met, f"{p['rejected']} refused, {late} late of {p['sent']}", detail)


def _where(p: dict[str, Any]) -> str:
    return f"{p['burst_size']} at {p['budget_ms']:g} ms"


def _bursts_fit(shapes: dict[str, Any]) -> dict[str, Any]:
    fits = ", ".join(f"{n} at ≥ {b:g} ms" for n, b in BURST_FITS_MS.items())
    name = f"bursts that fit their budget ({fits}): refused, inside the budget at the client"
    goal = f"0 refused, ≥ {100 * BURST_HIT_RATE:g}% inside"
    points = [
        p
        for p in shapes.get("bursts", [])
        if p["burst_size"] in BURST_FITS_MS and p["budget_ms"] >= BURST_FITS_MS[p["burst_size"]]
    ]
    if not points:
        return _target(name, goal, None, None, "-", "no such bursts measured")
    refused = sum(p["rejected"] for p in points)
    worst = min(points, key=lambda p: p["client_hit_rate_sent"] or 0.0)
    sent = sum(p["sent"] for p in points)
    inside = sum(in_time_at_client(p) for p in points)
    detail = (
        f"worst: bursts of {_where(worst)}, client p99 {_ms(worst['client_ms']['p99'])}; all {len(points)} "
        f"points together: {inside} of {sent} inside; refused: "
        + ("; ".join(f"{_where(p)}: {_reasons(p)}" for p in points if p["rejected"]) or "none")
    )
    rate = worst["client_hit_rate_sent"]
    met = refused == 0 and rate is not None and rate >= BURST_HIT_RATE
    return _target(name, goal, rate, met, f"{refused} refused, worst {_pct(rate)} inside", detail)


def _bursts_tight(shapes: dict[str, Any]) -> dict[str, Any]:
    low, high = TIGHT_BURST_MS
    name = f"bursts at budgets {low:g}–{high:g} ms: late by the server's clock, refusal time at the client (p99)"
    goal = f"0 late, refusals ≤ {REFUSAL_MAX_MS:g} ms"
    points = [p for p in shapes.get("bursts", []) if low <= p["budget_ms"] <= high]
    if not points:
        return _target(name, goal, None, None, "-", "no such bursts measured")
    late = sum(late_at_server(p) for p in points)
    refusal_p99 = [p["refused_client_ms"]["p99"] for p in points if p["refused_client_ms"]["p99"] is not None]
    slowest = max(refusal_p99, default=None)
    detail = "; ".join(
        f"{_where(p)}: {p['ok']} answered, refused {_reasons(p)} (p99 {_ms(p['refused_client_ms']['p99'])}), "
        f"late {late_at_server(p)}"
        for p in points
    )
    met = late == 0 and (slowest is None or slowest <= REFUSAL_MAX_MS)
    return _target(name, goal, slowest, met, f"{late} late, refusals p99 {_ms(slowest)}", detail)


def _hey(shapes: dict[str, Any]) -> dict[str, Any]:
    c, q, budget = HEY_SHAPE
    name = f"hey -c {c} -q {q:g} ({c * q:g} requests/s) at budget {budget:g} ms: refused, inside at the client"
    goal = f"≤ {100 * HEY_MAX_REFUSED:g}% refused, ≥ {100 * HEY_HIT_RATE:g}% inside"
    hey = shapes.get("hey", {})
    p = next((p for p in hey.get("points", []) if (p["concurrency"], p["qps"], p["budget_ms"]) == (c, q, budget)), None)
    if p is None:
        return _target(name, goal, None, None, "-", hey.get("skipped") or "not measured")
    refused = p["rejected"] / p["sent"] if p["sent"] else 1.0
    inside = p["client_hit_rate_sent"]
    server = p.get("server") or {}
    detail = (
        f"{p['sent']} requests, {p['errors']} without an answer; refused {_reasons(p)}; client p99 "
        f"{_ms(p['client_ms']['p99'])}; server (/metrics): {server.get('met', 0):.0f} met, "
        f"{server.get('missed', 0):.0f} missed, {server.get('rejected', 0):.0f} rejected"
    )
    met = refused <= HEY_MAX_REFUSED and inside is not None and inside >= HEY_HIT_RATE
    return _target(name, goal, inside, met, f"{_pct(refused)} refused, {_pct(inside)} inside", detail)


def _goodput(shapes: dict[str, Any]) -> dict[str, Any]:
    base = shapes.get("closed_baseline")
    points = [p for p in shapes.get("closed", []) if (p["budget_ms"] or 0) >= GOODPUT_MIN_BUDGET_MS]
    c = base["concurrency"] if base else "?"
    name = f"goodput of {c} closed-loop clients at budgets ≥ {GOODPUT_MIN_BUDGET_MS:g} ms / fixed depth at c={c}"
    goal = f"≥ {100 * GOODPUT_RATIO_MIN:g}%"
    throughput = base and base["throughput_rps"]
    if not points or not throughput:
        return _target(name, goal, None, None, "-", "not measured")
    worst = min(points, key=lambda p: p["goodput_rps"] or 0.0)
    ratio = (worst["goodput_rps"] or 0.0) / throughput
    detail = (
        f"worst at budget {worst['budget_ms']:g} ms: {worst['goodput_rps'] or 0:.0f} answers inside the budget per "
        f"second vs the fixed-depth server's {throughput:.0f}/s; "
        + ", ".join(f"{p['budget_ms']:g} ms: {p['goodput_rps'] or 0:.0f}/s" for p in points)
    )
    return _target(name, goal, ratio, ratio >= GOODPUT_RATIO_MIN, f"{100 * ratio:.0f}%", detail)


def evaluate_shape_targets(shapes: dict[str, Any] | None) -> Sequence[dict[str, Any]]:
    """The traffic-shape targets; none for results without the phase (older results.json files)."""
    if not shapes:
        return []
    return [_curl(shapes), _sparse_late(shapes), _bursts_fit(shapes), _bursts_tight(shapes), _hey(shapes),
            _goodput(shapes)]  # fmt: skip
