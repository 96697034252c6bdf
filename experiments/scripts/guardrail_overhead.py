"""What the guardrail costs the hit rates (docs/guardrail.md): the same load against servers that differ only
in ELASTIC_GUARDRAIL_SHARE, in rounds that alternate the settings (this VM drifts), each point through
`elastic bench load`. Per point: the share of answers inside their budget (the server's `budget_met`), the
share of all requests sent answered in budget (refusals count as misses), refusals, and the re-runs the
guardrail made meanwhile (from /metrics); the 1-minute load average before each server starts.

    .venv/bin/python experiments/scripts/guardrail_overhead.py --data ../shared/data/cifar10 --rounds 4 \\
        --shares 0,0.01,1 --json /tmp/guardrail_overhead.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from elastic_anytime.benchmarks.servers import elastic_command, free_port, start  # noqa: E402

log = logging.getLogger("guardrail_overhead")
CHECKPOINT = ROOT / "models/pretrained/resnet9-cifar10"
_RERUNS = re.compile(r"^elastic_exit_agreement_total\{[^}]*\} (\S+)$", re.MULTILINE)


def reruns(base_url: str) -> float:
    return sum(float(v) for v in _RERUNS.findall(httpx.get(f"{base_url}/metrics", timeout=10).text))


def measure(share: str, data: str, log_dir: Path, points: list[tuple[str, int, str, int]]) -> list[dict[str, Any]]:
    port = free_port()
    env = {"ELASTIC_TORCH_THREADS": "1", "ELASTIC_GUARDRAIL_SHARE": share}
    load_before = os.getloadavg()[0]
    rows = []
    with start(f"share-{share}", [*elastic_command(CHECKPOINT, port), "--no-access-log"], port, "/readyz", log_dir,
               env) as server:  # fmt: skip
        for mode, rate, budgets, requests in points:
            out = log_dir / f"load-{share}-{mode}.json"
            before = reruns(server.base_url)
            subprocess.run(
                [sys.executable, "-m", "elastic_anytime.elastic_cli.main", "bench", "load",
                 "--url", server.classify_url,
                 "--data", data, "--mode", mode, "--rates", str(rate), "--budgets", budgets,
                 "--requests", str(requests), "--time-limit", "30", "--json", str(out)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            after = reruns(server.base_url)
            for point in json.loads(out.read_text())["points"]:
                rows.append({
                    "share": share, "mode": mode, "rate": rate, "budget_ms": point["budget_ms"],
                    "sent": point["sent"], "rejected": point["rejected"],
                    "hit_answers": point["server_hit_rate"], "hit_sent": point["client_hit_rate_sent"],
                    "reruns": after - before, "load_before": load_before,
                })  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """Median and range over the rounds, per share and point."""
    lines = [
        "| share | load | budget ms | answers in budget: median (range) | all sent in budget | refused | re-runs |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["mode"], r["rate"], r["budget_ms"], r["share"]) for r in rows}, key=lambda k: (k[0], k[2], k[3]))
    for mode, rate, budget, share in keys:
        group = [r for r in rows if (r["mode"], r["rate"], r["budget_ms"], r["share"]) == (mode, rate, budget, share)]
        hits = [100 * r["hit_answers"] for r in group]
        sent = statistics.median(100 * r["hit_sent"] for r in group)
        refused = statistics.median(r["rejected"] for r in group)
        reruns_made = statistics.median(r["reruns"] for r in group)
        lines.append(
            f"| {share} | {mode} {rate}/s | {budget:g} | {statistics.median(hits):.2f} %"
            f" ({min(hits):.2f}–{max(hits):.2f}) | {sent:.2f} % | {refused:.0f} | {reruns_made:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--shares", default="0,0.01,1")
    parser.add_argument("--json", type=Path)
    # Poisson arrivals at a moderate load, and evenly spaced lone requests
    parser.add_argument("--open-rate", type=int, default=250)
    parser.add_argument("--open-budgets", default="4,5,8")
    parser.add_argument("--sparse-rate", type=int, default=40)
    parser.add_argument("--sparse-budgets", default="3,5")
    args = parser.parse_args()
    points = [("open", args.open_rate, args.open_budgets, 1000), ("sparse", args.sparse_rate, args.sparse_budgets, 300)]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="guardrail-overhead-") as tmp:
        for round_index in range(args.rounds):
            shares = args.shares.split(",")
            for share in shares if round_index % 2 == 0 else shares[::-1]:  # ABC CBA: drift cancels out
                rows += measure(share, args.data, Path(tmp), points)
                log.info("round %d, share %s done (load average %.2f)", round_index + 1, share, os.getloadavg()[0])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    log.info("%s", summary(rows))


if __name__ == "__main__":
    main()
