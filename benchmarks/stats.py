"""Summaries of one measurement point: hits, accuracy, latency percentiles, throughput, exits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from elastic_anytime.benchmarks.loadgen import PointRun, Record

# 503: overloaded or queue full; 429: rate limited. A 422 `budget_too_small` (the budget is below what the
# server's first exit needs) is a refusal too: see `is_rejected`.
REJECT_STATUSES = {429, 503}
REJECT_CODES = {"budget_too_small"}


def is_rejected(record: Record) -> bool:
    """Refused by admission control rather than failed: the server chose not to answer late."""
    return record.status in REJECT_STATUSES or (record.status == 422 and record.error_code in REJECT_CODES)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    if not len(values):
        return {f"p{q:g}": None for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


def exit_timing(
    exit_index: int, single_ms: Sequence[float], batch_size: int, batched_ms: Sequence[float], images: int
) -> dict[str, Any]:
    """One exit's in-process timing: batch-1 percentiles, and per-image cost and throughput when batched."""
    total_s = sum(batched_ms) / 1000
    return {
        "exit": exit_index,
        "batch1_ms": percentiles(single_ms),
        "batch": batch_size,
        "batch_ms": percentiles(batched_ms),
        "batched_per_image_ms": 1000 * total_s / images if images else None,
        "batched_images_per_s": images / total_s if total_s else None,
    }


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def refusal_reason(record: Record) -> str:
    """Why the server refused: the error code of its JSON body (`overloaded`, `queue_full`, `unavailable`,
    `budget_too_small`), or the HTTP status where the client saw no body (hey reads none)."""
    return record.error_code or f"http_{record.status}"


def refusals_by_reason(records: Sequence[Record]) -> dict[str, int]:
    """Refused requests counted by reason: an `overloaded` calls for a less busy replica, a
    `budget_too_small` for a larger budget; one total hides which."""
    return dict(sorted(Counter(refusal_reason(r) for r in records if is_rejected(r)).items()))


def in_time_at_client(records: Sequence[Record], budget_ms: float) -> int:
    """Answers the client had within the budget (its own clock: what the caller of a deadline sees)."""
    return sum(r.status == 200 and r.client_ms <= budget_ms for r in records)


def goodput(records: Sequence[Record], duration_s: float, budget_ms: float | None) -> float | None:
    """Answers inside the budget at the client per second: throughput that counts only useful answers."""
    if budget_ms is None or duration_s <= 0:
        return None
    return in_time_at_client(records, budget_ms) / duration_s


def latency_gap(records: Sequence[Record]) -> dict[str, float | None]:
    """Client latency minus the server's `latency_ms`, per answer: what the server's clock does not see
    (connect, the body's way in before the server stamps it, the response's way out, the client's loop)."""
    gaps = [r.client_ms - r.latency_ms for r in records if r.status == 200 and r.latency_ms is not None]
    return percentiles(gaps, (50, 99))


def refusal_latency(records: Sequence[Record]) -> dict[str, float | None]:
    """How long refusals took at the client: a refusal is only useful if it comes back at once."""
    return percentiles([r.client_ms for r in records if is_rejected(r)], (50, 99))


def _late_answers(late: Sequence[Record], budget_ms: float | None) -> dict[str, Any]:
    """Which exits the late answers came from and by how much they missed: where a miss comes from
    (a queue wait ends at exit 0; a deeper exit means a stage ran over its prediction)."""
    missed_by = [r.latency_ms - budget_ms for r in late if r.latency_ms is not None and budget_ms is not None]
    return {
        "late_exits": {str(k): v for k, v in sorted(Counter(r.exit for r in late).items())},
        "late_by_ms": percentiles(missed_by, (50, 100)) if missed_by else None,
    }


def summarize(records: Sequence[Record], duration_s: float, budget_ms: float | None = None) -> dict[str, Any]:
    """Counts and rates for one point.

    Every sent request is exactly one of ok / rejected / error. Hit rates are over the accepted
    (ok) requests; `client_hit_rate_sent` also counts rejects and errors as misses.
    """
    ok = [r for r in records if r.status == 200]
    rejected = [r for r in records if is_rejected(r)]
    errors = [r for r in records if r.status != 200 and not is_rejected(r)]
    server_known = [r for r in ok if r.budget_met is not None]
    summary: dict[str, Any] = {
        "sent": len(records),
        "ok": len(ok),
        "rejected": len(rejected),
        "errors": len(errors),
        "error_examples": sorted({r.error or f"HTTP {r.status}" for r in errors})[:3],
        "duration_s": duration_s,
        "throughput_rps": len(ok) / duration_s if duration_s > 0 else None,
        "accuracy": _rate(sum(r.correct for r in ok), len(ok)),
        "client_ms": percentiles([r.client_ms for r in ok]),
        "server_ms": percentiles([r.latency_ms for r in ok if r.latency_ms is not None]),
        "queue_ms": percentiles([r.queue_ms for r in ok if r.queue_ms is not None]),
        "exit_histogram": {str(k): v for k, v in sorted(Counter(r.exit for r in ok if r.exit is not None).items())},
        "mean_mflops": float(np.mean([r.mflops for r in ok if r.mflops is not None]))
        if any(r.mflops is not None for r in ok)
        else None,
        "max_lag_ms": max((r.lag_ms for r in records), default=0.0),
        "budget_ms": budget_ms,
        "server_hit_rate": _rate(sum(bool(r.budget_met) for r in server_known), len(server_known)),
        **_late_answers([r for r in server_known if not r.budget_met], budget_ms),
        "client_hit_rate": None,
        "client_hit_rate_sent": None,
        "refusals": refusals_by_reason(records),
        "refused_client_ms": refusal_latency(records),
        "gap_ms": latency_gap(records),
        "goodput_rps": goodput(records, duration_s, budget_ms),
    }
    if budget_ms is not None:
        in_time = in_time_at_client(ok, budget_ms)
        summary["client_hit_rate"] = _rate(in_time, len(ok))
        summary["client_hit_rate_sent"] = _rate(in_time, len(records))
    return summary


def summarize_run(run: PointRun) -> dict[str, Any]:
    budget = run.spec.fields.get("budget_ms")
    summary = summarize(run.records, run.duration_s, float(budget) if budget is not None else None)
    summary.update(
        mode=run.spec.mode,
        concurrency=run.spec.concurrency if run.spec.mode == "closed" else None,
        rate=run.spec.rate if run.spec.mode == "open" else None,
        offered_rps=len(run.records) / run.send_window_s if run.send_window_s > 0 else None,
        stopped_by_time=run.stopped_by_time,
    )
    return summary


def deadline_view(records: Sequence[Record], duration_s: float, budget_ms: float) -> dict[str, Any]:
    """Score answers that carried no budget (a fixed-depth run) against `budget_ms` after the fact:
    an answer is in time when its server-side (or client-side) latency is within the budget."""
    summary = summarize(records, duration_s, budget_ms)
    ok = [r for r in records if r.status == 200]
    timed = [r for r in ok if r.latency_ms is not None]
    summary["server_hit_rate"] = _rate(sum(r.latency_ms <= budget_ms for r in timed), len(timed))
    summary.update(_late_answers([r for r in timed if r.latency_ms > budget_ms], budget_ms))
    # accuracy of what arrives in time: a late answer is worth nothing to a caller with a deadline
    summary["accuracy_in_time"] = _rate(sum(r.correct and r.client_ms <= budget_ms for r in ok), len(ok))
    return summary
