"""The whole comparison in one run on one machine (what `make bench` runs):

1. in-process lower bound and per-exit accuracy over the benchmark images;
2. our server: full depth at concurrency 1 and at saturation (the fixed-depth baseline), a budget
   sweep at concurrency 1, the server held to each exit in turn at concurrency 1 (the oracle's choice
   made again from the server itself), and open-loop Poisson load at multiples of saturation for each
   budget; then the traffic shapes users send (benchmarks/traffic.py: sparse requests on the idle server,
   bursts, paced load from hey, closed-loop goodput against fixed depth);
3. the peer: LitServe at full depth, unbatched and batched like ours;
4. the oracle and the targets, computed from the above.

Servers run as subprocesses bound to 127.0.0.1; the load generator runs in this process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from elastic_anytime.benchmarks import inprocess, machine, servers
from elastic_anytime.benchmarks.dataset import Sample, load_samples
from elastic_anytime.benchmarks.front_ends import run_front_ends
from elastic_anytime.benchmarks.loadgen import LoadSpec, run_point
from elastic_anytime.benchmarks.oracle import QUANTILE, accuracy_on, fixed_exit_fit, oracle_exit
from elastic_anytime.benchmarks.sizes import SuiteSize
from elastic_anytime.benchmarks.stats import deadline_view, summarize_run
from elastic_anytime.benchmarks.targets import evaluate_targets
from elastic_anytime.benchmarks.traffic import run_traffic
from elastic_anytime.models.checkpoint import read_metadata

log = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    checkpoint: Path
    data: Path
    size: SuiteSize
    out_dir: Path
    threads: int
    max_batch_size: int = 8
    max_batch_wait_ms: float = 2.0
    peer: bool = True
    command: str = ""
    device: str = "cpu"  # resolved ('cpu', 'cuda'): our server and the in-process lower bound run there
    server_env: dict[str, str] = field(default_factory=dict)


class Bench:
    """Holds the images and sends measured points (after a few unmeasured warm-up requests)."""

    def __init__(self, samples: Sequence[Sample], size: SuiteSize) -> None:
        self.samples = list(samples)
        self.size = size

    def point(self, url: str, *, requests: int, fields: dict | None = None, **load: Any) -> tuple[dict, list]:
        spec = LoadSpec(requests=requests, time_limit_s=self.size.time_limit_s, fields=fields or {}, **load)
        run = run_point(url, self.samples, spec)
        summary = summarize_run(run)
        log.info(
            "%s: ok %d/%d, rejected %d, errors %d, p50 %s ms, %.1f/s",
            spec.describe(),
            summary["ok"],
            summary["sent"],
            summary["rejected"],
            summary["errors"],
            _fmt(summary["client_ms"]["p50"]),
            summary["throughput_rps"] or 0.0,
        )
        return summary, run.records

    def warm(self, url: str) -> None:
        run_point(url, self.samples, LoadSpec(requests=self.size.warmup_requests, concurrency=2))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _sent_samples(records: Sequence) -> list[int]:
    return [r.sample for r in records if r.status == 200]


def elastic_env(cfg: SuiteConfig) -> dict[str, str]:
    return {
        "ELASTIC_TORCH_THREADS": str(cfg.threads),
        "ELASTIC_MAX_BATCH_SIZE": str(cfg.max_batch_size),
        "ELASTIC_MAX_BATCH_WAIT_MS": str(cfg.max_batch_wait_ms),
        "ELASTIC_DEVICE": cfg.device,
        **cfg.server_env,
    }


def run_elastic(cfg: SuiteConfig, bench: Bench) -> dict[str, Any]:
    port = servers.free_port()
    env = elastic_env(cfg)
    command = [*servers.elastic_command(cfg.checkpoint, port), "--no-access-log", "--log-level", "warning"]
    size = cfg.size
    with servers.start("elastic", command, port, "/readyz", cfg.out_dir / "logs", env=env) as server:
        url = server.classify_url
        info = httpx.get(server.base_url + "/v1/model", timeout=10).json()
        bench.warm(url)
        full_c1, full_c1_records = bench.point(url, requests=size.c1_requests)
        full_c1_raw, _ = bench.point(url, requests=size.c1_requests, raw=True)  # /v1/classify/raw
        saturation, _ = bench.point(url, requests=size.saturation_requests, concurrency=size.saturation_concurrency)
        sweep = []
        for budget in size.budgets_ms:
            summary, records = bench.point(url, requests=size.c1_requests, fields={"budget_ms": budget})
            sweep.append({**summary, "samples": _sent_samples(records)})
        # our server held to each exit in turn (a compute budget of exactly that exit's MFLOPs), right after
        # the sweep: the exits' latency through the server in the same phase of this noisy machine
        fixed_exits = []
        for exit_info in info.get("exits", []):  # + 0.01: /v1/model rounds the MFLOPs, the engine does not
            summary, _ = bench.point(
                url, requests=size.c1_requests, fields={"budget_mflops": exit_info["mflops"] + 0.01}
            )
            fixed_exits.append({"exit": exit_info["index"], **summary})
        saturation_rps = saturation["throughput_rps"] or 1.0
        load_points, fixed_points = [], []
        for multiple in size.loads:
            rate = multiple * saturation_rps
            for budget in size.budgets_ms:
                summary, _ = bench.point(
                    url, requests=size.load_requests, fields={"budget_ms": budget}, mode="open", rate=rate
                )
                load_points.append({**summary, "load": multiple})
            summary, records = bench.point(url, requests=size.load_requests, mode="open", rate=rate)
            fixed_points.append({**summary, "load": multiple, "records": records})
        shapes = run_traffic(url, server.base_url, bench.samples, size.shapes, size.time_limit_s)
    return {
        "settings": info.get("serving", {}),
        "full_depth_c1": full_c1,
        "full_depth_c1_records": full_c1_records,
        "full_depth_c1_raw": full_c1_raw,
        "saturation": saturation,
        "budget_sweep_c1": sweep,
        "fixed_exits_c1": fixed_exits,
        "load_sweep": load_points,
        "fixed_depth_load": fixed_points,
        "shapes": shapes,
    }


def run_peer(cfg: SuiteConfig, bench: Bench, name: str, max_batch_size: int, wait_ms: float) -> dict[str, Any]:
    port = servers.free_port()
    command = servers.litserve_command(cfg.checkpoint, port, cfg.threads, max_batch_size, wait_ms / 1000, cfg.device)
    size = cfg.size
    with servers.start(name, command, port, "/health", cfg.out_dir / "logs") as server:
        url = server.classify_url
        bench.warm(url)
        c1, _ = bench.point(url, requests=size.c1_requests)
        saturation, _ = bench.point(url, requests=size.saturation_requests, concurrency=size.saturation_concurrency)
    return {"max_batch_size": max_batch_size, "batch_wait_ms": wait_ms, "c1": c1, "saturation": saturation}


def fixed_depth_views(elastic: dict[str, Any], budgets: Sequence[float]) -> dict[str, Any]:
    """The fixed-depth baseline scored against each budget: answers at full depth, late or not."""
    c1_records = elastic.pop("full_depth_c1_records")
    duration = elastic["full_depth_c1"]["duration_s"]
    c1 = [deadline_view(c1_records, duration, b) for b in budgets]
    loads = []
    for point in elastic.pop("fixed_depth_load"):
        records = point.pop("records")
        for b in budgets:
            loads.append(
                {**deadline_view(records, point["duration_s"], b), "load": point["load"], "rate": point["rate"]}
            )
    return {"c1": c1, "load": loads}


def add_oracle(
    sweep: list[dict[str, Any]],
    exits: list[dict[str, Any]],
    correct: list[list[bool]],
    overhead_ms: float,
    fixed_exits: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Each sweep point with the oracle's exit and accuracy on the images it sent, and the same from the
    server's own fixed-exit points (`fixed_exit_*`; None without them)."""
    rows = []
    for point in sweep:
        samples = point.pop("samples")
        k = oracle_exit(point["budget_ms"], exits, overhead_ms)
        fixed = fixed_exit_fit(point["budget_ms"], fixed_exits, exits)
        rows.append(
            {
                **point,
                "oracle_exit": k,
                "oracle_accuracy": None if k is None else accuracy_on(k, samples, correct),
                "fixed_exit_fit": fixed,
                "fixed_exit_accuracy": None if fixed is None else accuracy_on(fixed, samples, correct),
            }
        )
    return rows


def run_suite(cfg: SuiteConfig) -> dict[str, Any]:
    meta = read_metadata(cfg.checkpoint)
    size = cfg.size
    host = machine.describe(cfg.threads, cfg.device)
    steadiness = machine.Steadiness()
    samples = load_samples(cfg.data, meta["classes"], size.images)
    log.info(
        "%d images from %s; size %s; %d torch threads; device %s",
        *(len(samples), cfg.data, size.name, cfg.threads, cfg.device),
    )
    bench = Bench(samples, size)

    timing = samples[: size.timing_images]
    lower = inprocess.measure(cfg.checkpoint, samples, timing, cfg.max_batch_size, cfg.threads, cfg.device)
    torch.set_num_threads(1)  # from here on this process only generates load
    lower.pop("correct")  # the plain model's; the oracle is scored with the serving runner's
    correct = lower["serving"].pop("correct")
    elastic = run_elastic(cfg, bench)
    elastic["front_ends"] = run_front_ends(cfg, bench, elastic_env(cfg))
    peers = {}
    if cfg.peer:
        peers["litserve"] = run_peer(cfg, bench, "litserve", 1, 0.0)
        peers["litserve_batched"] = run_peer(cfg, bench, "litserve-batched", cfg.max_batch_size, cfg.max_batch_wait_ms)

    # the oracle knows what serving alone costs: server-side p50 minus the serving runner's in-process p50
    serving = lower["serving"]["exits"]
    overhead_ms = max(0.0, (elastic["full_depth_c1"]["server_ms"]["p50"] or 0.0) - serving[-1]["batch1_ms"]["p50"])
    elastic["budget_sweep_c1"] = add_oracle(
        elastic["budget_sweep_c1"], serving, correct, overhead_ms, elastic["fixed_exits_c1"]
    )
    fixed = fixed_depth_views(elastic, size.budgets_ms)
    host.update(steadiness.finish())
    results = {
        "size": size.name,
        "command": cfg.command or " ".join(sys.argv),
        "checkpoint": os.path.relpath(cfg.checkpoint),
        "dataset": meta.get("dataset"),
        "data": os.path.relpath(cfg.data),
        "images": len(samples),
        "machine": host,
        "server_overhead_ms": overhead_ms,
        "oracle_quantile": QUANTILE,
        "lower_bound": lower,
        "elastic": elastic,
        "fixed_depth": fixed,
        "peers": peers,
    }
    results["targets"] = evaluate_targets(results)
    return results
