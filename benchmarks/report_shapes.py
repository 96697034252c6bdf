"""Markdown for the traffic shapes: the "Traffic shapes" section of BENCHMARKS.md, and the table
`elastic bench load --mode sparse|burst|hey` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elastic_anytime.benchmarks.markdown import ms, pct, table


def shape_load(p: dict[str, Any]) -> str:
    """How a point's traffic was sent, in a few words."""
    shape = p.get("shape")
    if shape in ("sparse", "curl"):
        return f"{p['rate']:g}/s, {p['connection']}"
    if shape == "burst":
        return f"{p['burst_size']} at once ×{p['bursts']}, every {p['interval_s']:g} s"
    if shape == "hey":
        offered = f" ({p['offered_rps']:g}/s)" if p.get("offered_rps") else ""
        return f"hey -c {p['concurrency']}" + (f" -q {p['qps']:g}" if p.get("qps") else "") + offered
    if p.get("mode") == "open":
        return f"open {p['rate']:.0f}/s"
    return f"closed c={p.get('concurrency')}"


def refusals_text(p: dict[str, Any]) -> str:
    """ "3 (overloaded 2, queue_full 1)"; a bare count where there is one reason only."""
    refusals = p.get("refusals") or {}
    if not refusals:
        return str(p["rejected"])
    if len(refusals) == 1:
        ((reason, count),) = refusals.items()
        return f"{count} {reason}"
    return f"{p['rejected']} (" + ", ".join(f"{k} {v}" for k, v in refusals.items()) + ")"


def _gap(p: dict[str, Any]) -> str:
    gap = p.get("gap_ms") or {}
    if gap.get("p50") is None:
        return "-"
    return f"{gap['p50']:.2f} / {gap['p99']:.2f}"


def shapes_table(points: Sequence[dict[str, Any]]) -> str:
    header = [
        "shape",
        "sent how",
        "budget ms",
        "sent",
        "answered",
        "refused (reason)",
        "errors",
        "in budget (server, answers)",
        "in budget (client, all sent)",
        "client p50 ms",
        "client p99 ms",
        "client − server p50 / p99 ms",
        "refusals p99 ms",
        "goodput/s",
    ]
    rows = [
        [
            p.get("shape", "-"),
            shape_load(p),
            "none" if p["budget_ms"] is None else f"{p['budget_ms']:g}",
            p["sent"],
            p["ok"],
            refusals_text(p),
            p["errors"],
            pct(p["server_hit_rate"], 2),
            pct(p["client_hit_rate_sent"], 2),
            ms(p["client_ms"]["p50"]),
            ms(p["client_ms"]["p99"]),
            _gap(p),
            ms((p.get("refused_client_ms") or {}).get("p99")),
            "-" if p.get("goodput_rps") is None else f"{p['goodput_rps']:.1f}",
        ]
        for p in points
    ]
    return table(header, rows)


def _hey_text(hey: dict[str, Any]) -> str:
    lines = []
    if hey.get("skipped"):
        lines.append(f"> **hey**: {hey['skipped']}.")
    for p in hey.get("points", []):
        server = p.get("server")
        counts = (
            "its /metrics were not read"
            if not server
            else ", ".join(f"{k} {v:.0f}" for k, v in server.items() if k in ("met", "missed", "rejected", "error"))
        )
        lines.append(f"- `{p['command']}`: server counters over the point: {counts}.")
    return "\n".join(lines)


def traffic_shapes(results: dict[str, Any]) -> str:
    """The section and the blank line after it, or nothing for results without the phase (older results.json
    files)."""
    shapes = results["elastic"].get("shapes")
    if not shapes:
        return ""
    base = shapes["closed_baseline"]
    points = [*shapes["sparse"], *shapes["bursts"], *shapes["hey"]["points"], base, *shapes["closed"]]
    throughput = "-" if not base["throughput_rps"] else f"{base['throughput_rps']:.0f}"
    return f"""## Traffic shapes

What users send besides steady load, on the same server right after the load sweep. **Sparse**: evenly
spaced requests on the otherwise idle server, on one keep-alive connection, and on a new connection per
request as curl sends them (connect time included at the client). **Bursts**: N requests at the same
instant, every T seconds: the N connections are opened first, then every request is written in one go.
**hey**: paced load from a compiled load generator (`hey`, each of its `-c` workers at `-q` requests/s on
its own connection; one image, sent as multipart); hey reads no response body, so the server's side comes
from the difference of its `elastic_requests_total` counters over the point, and there is no per-request
server latency. **Closed**: concurrent clients each waiting for its answer, with a budget, after the
fixed-depth server (no budget, budget "none") at the same concurrency: {throughput} answers/s, the
throughput the goodput target compares with.

Refused: the error code of each refusal (`overloaded`, `queue_full`, `unavailable`: 503; `budget_too_small`:
422; for hey, the server's own `elastic_refusals_total` by reason where it has them, else `http_503`: hey
reads no body). In budget (server): the answers' `budget_met`; (client): the
client's latency within the budget, over all sent. Client − server: each answer's client latency minus its
`latency_ms`. Refusals p99: how long a refusal took to come back at the client. Goodput: answers inside the
budget at the client per second (bursts: per second of burst, first write to last answer).

{shapes_table(points)}
""" + (f"\n{hey}\n\n" if (hey := _hey_text(shapes["hey"])) else "\n")
