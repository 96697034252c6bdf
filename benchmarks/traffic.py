"""The traffic-shapes phase of the suite, and the points `elastic bench load --mode sparse|burst|hey` sends.

Steady load (closed loop, Poisson open loop) is not what users send. This phase adds, after the steady
phases, on the same server:

- sparse requests on an otherwise idle server, on one keep-alive connection and on a new connection per
  request (curl): an idle server takes other paths than a busy one;
- bursts: N requests at the same instant every T seconds;
- paced load from a compiled load generator (hey), skipped with a note when hey is missing or fails;
- 8 closed-loop clients with budgets, against the fixed-depth server's throughput at the same concurrency
  measured just before (no budget, full depth): goodput, answers inside the budget at the client per
  second, is what a caller with a deadline gets.

Every point is a `stats.summarize` summary (refusals by reason, inside the budget at the server and at the
client, client − server latency gap, goodput, refusal latency) plus `shape` and what shaped it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.hey import (
    HeyError,
    HeySpec,
    display_command,
    find_hey,
    refusals_from_server,
    run_hey,
    server_hit_rate,
)
from elastic_anytime.benchmarks.loadgen import LoadSpec, Record, records_to_json, run_point
from elastic_anytime.benchmarks.shapes import BurstSpec, SparseSpec, run_bursts, run_sparse
from elastic_anytime.benchmarks.sizes import ShapeSize
from elastic_anytime.benchmarks.stats import summarize, summarize_run

log = logging.getLogger(__name__)
IDLE_PAUSE_S = 1.0  # before the sparse points: the server's earlier work drains, its queue empties


def _budget(fields: dict[str, Any]) -> float | None:
    budget = fields.get("budget_ms")
    return None if budget is None else float(budget)


def _with_records(summary: dict[str, Any], records: Sequence[Record], keep: bool) -> dict[str, Any]:
    """The per-request records too when asked (`elastic bench load --json`); the suite keeps summaries only."""
    return {**summary, "records": records_to_json(records)} if keep else summary


def _log(name: str, p: dict[str, Any]) -> None:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    log.info(
        "%s: %d sent, %d answered, refused %s, in budget server %s client %s, goodput %s/s",
        *(name, p["sent"], p["ok"], p["refusals"] or 0, share(p["server_hit_rate"])),
        *(share(p["client_hit_rate_sent"]), "-" if p["goodput_rps"] is None else f"{p['goodput_rps']:.1f}"),
    )


def sparse_point(url: str, samples: Sequence[Sample], spec: SparseSpec, keep_records: bool = False) -> dict[str, Any]:
    run = run_sparse(url, samples, spec)
    summary = summarize(run.records, run.duration_s, _budget(spec.fields))
    summary.update(
        shape="curl" if spec.new_connection else "sparse",
        rate=spec.rate,
        connection="new per request" if spec.new_connection else "keep-alive",
        stopped_by_time=run.stopped_by_time,
        max_lag_ms=max((r.lag_ms for r in run.records), default=0.0),
    )
    _log(spec.describe(), summary)
    return _with_records(summary, run.records, keep_records)


def burst_point(url: str, samples: Sequence[Sample], spec: BurstSpec, keep_records: bool = False) -> dict[str, Any]:
    run = run_bursts(url, samples, spec)
    summary = summarize(run.records, run.duration_s, _budget(spec.fields))
    summary.update(shape="burst", burst_size=spec.size, bursts=spec.bursts, interval_s=spec.interval_s)
    _log(spec.describe(), summary)
    return _with_records(summary, run.records, keep_records)


def hey_point(
    url: str, sample: Sample, spec: HeySpec, base_url: str | None, keep_records: bool = False
) -> dict[str, Any]:
    """Client side from hey's csv; server side (`server_hit_rate`, `server`, and the refusals by reason where the
    server counts them) from /metrics around it."""
    run = run_hey(url, sample, spec, base_url)
    summary = summarize(run.records, run.duration_s, _budget(spec.fields))
    summary.update(
        shape="hey",
        concurrency=spec.concurrency,
        qps=spec.qps,
        offered_rps=spec.offered_rps,
        accuracy=None,  # hey reads no response body: no class, no exit, no server latency per request
        server=run.server,
        server_hit_rate=server_hit_rate(run.server),
        client_refusals=summary["refusals"],  # by HTTP status: hey reads no body
        refusals=refusals_from_server(run.server_refusals, summary["rejected"]) or summary["refusals"],
        command=display_command(run.command),
    )
    _log(spec.describe(), summary)
    return _with_records(summary, run.records, keep_records)


def closed_point(url: str, samples: Sequence[Sample], spec: LoadSpec) -> dict[str, Any]:
    summary = {**summarize_run(run_point(url, samples, spec)), "shape": "closed"}
    _log(spec.describe(), summary)
    return summary


def _hey_points(url: str, base_url: str, sample: Sample, shapes: ShapeSize) -> dict[str, Any]:
    """The hey points, or why there are none: the suite reports a missing or failing hey, never crashes."""
    if find_hey() is None:
        note = "hey is not installed (`apt-get install hey`; `make bench` tries): hey phase skipped"
        log.warning(note)
        return {"points": [], "skipped": note}
    points = []
    for budget in shapes.hey_budgets_ms:
        spec = HeySpec(shapes.hey_requests, shapes.hey_concurrency, shapes.hey_qps, {"budget_ms": budget})
        try:
            points.append(hey_point(url, sample, spec, base_url))
        except HeyError as err:
            note = f"hey failed, its remaining points skipped: {err}"
            log.warning(note)
            return {"points": points, "skipped": note}
    return {"points": points, "skipped": None}


def run_traffic(
    url: str, base_url: str, samples: Sequence[Sample], shapes: ShapeSize, time_limit_s: float
) -> dict[str, Any]:
    """All the traffic shapes against one running server (classify `url`, /metrics under `base_url`)."""
    time.sleep(IDLE_PAUSE_S)
    sparse = sparse_point(
        url, samples, SparseSpec(shapes.sparse_rate, shapes.sparse_requests, {"budget_ms": shapes.sparse_budget_ms})
    )
    curl = SparseSpec(shapes.curl_rate, shapes.curl_requests, {"budget_ms": shapes.curl_budget_ms}, new_connection=True)
    curl_like = sparse_point(url, samples, curl)
    bursts = [
        burst_point(url, samples, BurstSpec(size, shapes.bursts, shapes.burst_interval_s, {"budget_ms": budget}))
        for size in shapes.burst_sizes
        for budget in shapes.burst_budgets_ms
    ]
    hey = _hey_points(url, base_url, samples[0], shapes)
    closed = [
        LoadSpec(
            requests=shapes.closed_requests,
            concurrency=shapes.closed_concurrency,
            time_limit_s=time_limit_s,
            fields={} if budget is None else {"budget_ms": budget},
        )
        for budget in (None, *shapes.closed_budgets_ms)  # the fixed-depth baseline first
    ]
    baseline, *budgeted = (closed_point(url, samples, spec) for spec in closed)
    return {
        "sparse": [sparse, curl_like],
        "bursts": bursts,
        "hey": hey,
        "closed_baseline": baseline,
        "closed": budgeted,
    }
