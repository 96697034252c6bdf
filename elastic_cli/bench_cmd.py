"""`elastic bench load …` (one load generator run against a server) and `elastic bench suite …`
(the whole comparison that `make bench` runs and that regenerates BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_DATA = "../shared/data/cifar10"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _budgets(text: str) -> list[float | None]:
    """'none,5,10' → [None, 5.0, 10.0]; none sends no budget (full depth unless the server has a default)."""
    return [None if v.strip().lower() == "none" else float(v) for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", required=True)

    load = sub.add_parser("load", help="send test images to a running server and report per point")
    load.add_argument("--url", required=True, help="classify endpoint, e.g. http://127.0.0.1:8000/v1/classify")
    load.add_argument("--data", default=DEFAULT_DATA, help=f"ImageFolder root or split folder ({DEFAULT_DATA})")
    load.add_argument("--split", default="test")
    load.add_argument("--checkpoint", help="where to read the class names when the server has no /v1/model")
    load.add_argument("--images", type=int, default=500, help="distinct images to cycle through (500)")
    load.add_argument("--budgets", type=_budgets, default=[None], help="comma list of budget_ms; 'none' = no budget")
    load.add_argument(
        "--mode", choices=["closed", "open", "sparse", "burst", "hey"], default="closed",
        help="closed loop, open loop (Poisson), sparse (evenly spaced, one at a time), burst (N at once every "
        "T s) or hey (paced load from the hey binary)",
    )  # fmt: skip
    load.add_argument(
        "--concurrency", type=_ints, default=[1], help="closed loop, hey (-c): comma list of concurrencies"
    )
    load.add_argument("--rates", type=_floats, default=[50.0], help="open loop, sparse: comma list of requests/s")
    load.add_argument("--new-connection", action="store_true", help="sparse: a new connection per request (curl-like)")
    load.add_argument("--burst-sizes", type=_ints, default=[16], help="burst: comma list of requests sent at once")
    load.add_argument("--bursts", type=int, default=3, help="burst: bursts per point (3)")
    load.add_argument("--burst-interval", type=float, default=1.0, help="burst: seconds between bursts (1)")
    load.add_argument(
        "--hey-qps", type=float, default=0.0, help="hey: requests/s per worker (-q); 0: as fast as answers come"
    )
    load.add_argument("--requests", type=int, default=200, help="requests per point (200)")
    load.add_argument("--time-limit", type=float, default=30.0, help="seconds per point at most (30)")
    load.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (10)")
    load.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="extra form field")
    load.add_argument(
        "--raw", action="store_true", help="post each image as the body to URL/raw, fields as query parameters"
    )
    load.add_argument("--json", type=Path, help="write the points (and per-request records) here")
    load.add_argument("--seed", type=int, default=0)

    suite = sub.add_parser("suite", help="lower bound, oracle, our server, LitServe; writes BENCHMARKS.md")
    suite.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped one)")
    suite.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help=f"ImageFolder root ({DEFAULT_DATA})")
    suite.add_argument("--size", choices=["smoke", "small", "full"], default="small")
    suite.add_argument("--threads", type=int, help="torch threads for the servers and in-process (torch default)")
    suite.add_argument("--max-batch-size", type=int, default=8, help="for Elastic and LitServe batched (8)")
    suite.add_argument("--max-batch-wait-ms", type=float, default=2.0, help="for Elastic and LitServe batched (2)")
    suite.add_argument("--no-peer", action="store_true", help="skip LitServe")
    suite.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto",
        help="where our server and the in-process lower bound run; auto: CUDA if available (LitServe stays on the CPU)",
    )  # fmt: skip
    suite.add_argument("--out", type=Path, default=Path("bench-out"), help="results.json and server logs")
    suite.add_argument("--doc", type=Path, help="write the markdown report here (e.g. BENCHMARKS.md)")
    suite.add_argument("--assets", type=Path, default=Path("docs/benchmarks"), help="plots and results for the doc")

    report = sub.add_parser("report", help="re-score the targets, re-render the markdown and plots from a results.json")
    report.add_argument("results", type=Path, help="results.json written by `elastic bench suite`")
    report.add_argument("--doc", type=Path, default=Path("BENCHMARKS.md"))
    report.add_argument("--assets", type=Path, default=Path("docs/benchmarks"))


def _stop_on_sigterm() -> None:
    """SIGTERM ends the run through the normal exit path, so the servers it started are stopped."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _classes(url: str, checkpoint: str | None) -> list[str]:
    import httpx

    from elastic_anytime.models.checkpoint import read_metadata
    from elastic_anytime.models.pretrained import default_checkpoint

    if checkpoint is None:
        base = url.split("/v1/")[0]
        try:
            response = httpx.get(base + "/v1/model", timeout=10)
            if response.status_code == 200:
                return list(response.json()["classes"])
        except (httpx.HTTPError, ValueError, KeyError):
            pass
    return list(read_metadata(checkpoint or default_checkpoint())["classes"])


def _extra_fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--field needs NAME=VALUE, got {pair!r}")
        fields[name] = value
    return fields


def _shape_point(args: argparse.Namespace, samples: list, load: float, fields: dict[str, Any]) -> dict[str, Any]:
    """One sparse, burst or hey point with its per-request records."""
    from elastic_anytime.benchmarks.hey import HeySpec
    from elastic_anytime.benchmarks.shapes import BurstSpec, SparseSpec
    from elastic_anytime.benchmarks.traffic import burst_point, hey_point, sparse_point

    if args.mode == "sparse":
        spec = SparseSpec(load, args.requests, fields, args.new_connection, args.raw, args.time_limit, args.timeout)
        return sparse_point(args.url, samples, spec, keep_records=True)
    if args.mode == "burst":
        burst = BurstSpec(int(load), args.bursts, args.burst_interval, fields, args.raw, args.timeout)
        return burst_point(args.url, samples, burst, keep_records=True)
    paced = HeySpec(args.requests, int(load), args.hey_qps, fields, args.raw, args.timeout)
    return hey_point(args.url, samples[0], paced, args.url.split("/v1/")[0], keep_records=True)


def run_load(args: argparse.Namespace) -> int:
    from elastic_anytime.benchmarks.dataset import load_samples
    from elastic_anytime.benchmarks.hey import HeyError
    from elastic_anytime.benchmarks.loadgen import LoadSpec, check_loopback, records_to_json, run_point
    from elastic_anytime.benchmarks.report import points_table
    from elastic_anytime.benchmarks.report_shapes import shapes_table
    from elastic_anytime.benchmarks.stats import summarize_run

    check_loopback(args.url)
    samples = load_samples(args.data, _classes(args.url, args.checkpoint), args.images, args.split, args.seed)
    extra = _extra_fields(args.field)
    loads = {"closed": args.concurrency, "hey": args.concurrency, "burst": args.burst_sizes}.get(args.mode, args.rates)
    points: list[dict[str, Any]] = []
    for load in loads:
        for budget in args.budgets:
            fields = dict(extra, **({} if budget is None else {"budget_ms": budget}))
            if args.mode in ("sparse", "burst", "hey"):
                try:
                    points.append(_shape_point(args, samples, load, fields))
                except HeyError as err:
                    sys.stderr.write(f"error: {err}\n")
                    return 1
                continue
            spec = LoadSpec(
                mode=args.mode,
                concurrency=int(load) if args.mode == "closed" else 1,
                rate=float(load) if args.mode == "open" else 0.0,
                requests=args.requests,
                time_limit_s=args.time_limit,
                timeout_s=args.timeout,
                fields=fields,
                seed=args.seed,
                raw=args.raw,
            )
            run = run_point(args.url, samples, spec)
            points.append({**summarize_run(run), "records": records_to_json(run.records)})
    shaped = args.mode in ("sparse", "burst", "hey")
    sys.stdout.write((shapes_table(points) if shaped else points_table(points)) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"url": args.url, "images": len(samples), "points": points}, indent=1) + "\n")
    return 0


def run_suite(args: argparse.Namespace) -> int:
    import torch

    from elastic_anytime.benchmarks.sizes import SIZES
    from elastic_anytime.benchmarks.suite import SuiteConfig, run_suite
    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.service.engine.runner import resolve_device

    checkpoint = (args.checkpoint or default_checkpoint()).resolve()
    device = resolve_device(args.device).type  # ValueError (exit 2) when cuda is asked for and missing
    data = args.data.resolve()
    if not data.is_dir():
        sys.stderr.write(f"error: data folder not found: {data}\n")
        return 2
    config = SuiteConfig(
        checkpoint=checkpoint,
        data=data,
        size=SIZES[args.size],
        out_dir=args.out,
        threads=args.threads or torch.get_num_threads(),
        max_batch_size=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms,
        peer=not args.no_peer,
        command="elastic " + " ".join(sys.argv[1:]),
        device=device,
        server_env={"ELASTIC_DEFAULT_BUDGET_MS": ""},  # no budget must mean full depth
    )
    results = run_suite(config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.doc:
        write_report(results, args.doc, args.assets)
    for target in results["targets"]:
        log.info("target %s: %s (goal %s) %s", target["name"], target["measured"], target["goal"], target["detail"])
    return 0


def write_report(results: dict[str, Any], doc: Path, assets: Path) -> None:
    """The markdown at `doc`, the plots and a copy of the results in `assets`, linked relative to `doc`."""
    from elastic_anytime.benchmarks.plots import write_plots
    from elastic_anytime.benchmarks.report import render

    plots = write_plots(results, assets)
    json_path = assets / "results.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    doc_dir = doc.resolve().parent
    links = {name: os.path.relpath(path.resolve(), doc_dir) for name, path in plots.items()}
    doc.write_text(render(results, links, os.path.relpath(json_path.resolve(), doc_dir)))
    log.info("wrote %s, plots and results in %s", doc, assets)


def run_report(args: argparse.Namespace) -> int:
    from elastic_anytime.benchmarks.targets import evaluate_targets

    results = json.loads(args.results.read_text())
    results["targets"] = evaluate_targets(results)  # the same measurements, scored as the suite scores them now
    write_report(results, args.doc, args.assets)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    _stop_on_sigterm()
    try:
        handlers = {"load": run_load, "suite": run_suite, "report": run_report}
        return handlers[args.bench_command](args)
    except (ValueError, FileNotFoundError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
