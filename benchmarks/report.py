"""Markdown for the load generator's points and for BENCHMARKS.md (generated, never hand-edited)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elastic_anytime.benchmarks.front_ends import front_ends_section
from elastic_anytime.benchmarks.markdown import ms, pct, table
from elastic_anytime.benchmarks.oracle import QUANTILE
from elastic_anytime.benchmarks.report_shapes import traffic_shapes
from elastic_anytime.benchmarks.targets import eligible_budget_ms


def exits_text(histogram: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in histogram.items()) or "-"


def late_text(point: dict[str, Any]) -> str:
    """The late answers (server-side) by exit, and the most one missed by: "0:2 3:1 (1.27 ms)"."""
    late = point.get("late_exits")
    if not late:
        return "-"
    worst = (point.get("late_by_ms") or {}).get("p100")
    return exits_text(late) + ("" if worst is None else f" ({worst:.2f} ms)")


def load_text(point: dict[str, Any]) -> str:
    if point.get("mode") == "open":
        return f"open {point['rate']:.0f}/s"
    return f"closed c={point.get('concurrency')}"


def points_table(points: Sequence[dict[str, Any]]) -> str:
    """One row per measurement point (what `elastic bench load` prints)."""
    header = [
        "load",
        "budget ms",
        "sent",
        "ok",
        "rejected",
        "errors",
        "in budget (server)",
        "in budget (client)",
        "accuracy",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "throughput/s",
        "exits",
    ]
    rows = [
        [
            load_text(p),
            "none" if p["budget_ms"] is None else f"{p['budget_ms']:g}",
            p["sent"],
            p["ok"],
            p["rejected"],
            p["errors"],
            pct(p["server_hit_rate"], 2),
            pct(p["client_hit_rate"], 2),
            pct(p["accuracy"]),
            ms(p["client_ms"]["p50"]),
            ms(p["client_ms"]["p95"]),
            ms(p["client_ms"]["p99"]),
            f"{p['throughput_rps']:.1f}" if p["throughput_rps"] else "-",
            exits_text(p["exit_histogram"]),
        ]
        for p in points
    ]
    return table(header, rows)


def _device(m: dict[str, Any]) -> str:
    """Where the model ran: the CPU, or the GPU's name (older results have no device: the CPU)."""
    if not m.get("gpu"):
        return m.get("device", "cpu")
    return f"{m['device']}: {m['gpu']}, {m['gpu_memory_gib']} GiB, CUDA {m['cuda']}"


def _machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = [
        ["CPU", m["cpu_model"]],
        ["device", _device(m)],
        ["cores", f"{m['cores']} ({m['usable_cores']} usable)"],
        ["torch", f"{m['torch']}, {m['torch_threads']} intra-op threads (servers and in-process alike)"],
        ["python", m["python"]],
        ["platform", m["platform"]],
        ["litserve / httpx / uvicorn", f"{m['litserve']} / {m['httpx']} / {m['uvicorn']}"],
        ["load average at start", ", ".join(str(v) for v in m["load_average_at_start"] or [])],
    ]
    probe = m.get("speed_probe_ms")
    if probe:  # runs recorded before the probe existed have none
        speeds = f"{probe[0]} ms at the start, {probe[1]} ms at the end"
        rows.append(["speed probe (2M pure-Python adds, best of 3)", speeds])
    if m.get("steal_share") is not None:
        rows.append(["CPU time taken by the hypervisor for other guests (steal)", pct(m["steal_share"], 1)])
    return table(["", ""], rows)


def _targets(results: dict[str, Any]) -> str:
    marks = {True: "yes", False: "**no**", None: "n/a"}
    rows = [[t["name"], t["goal"], t["measured"], marks[t["met"]], t["detail"]] for t in results["targets"]]
    return table(["target", "goal", "measured", "met", "detail"], rows)


def _bound_cells(e: dict[str, Any]) -> list[str]:
    return [
        pct(e["accuracy"], 2),
        ms(e["batch1_ms"]["p50"]),
        ms(e["batch1_ms"]["p99"]),
        f"{e['batched_images_per_s']:.0f}" if e["batched_images_per_s"] else "-",
    ]


def _lower_bound(results: dict[str, Any]) -> str:
    lower = results["lower_bound"]
    serving = lower.get("serving")  # older results.json files have only the plain model
    rows = []
    for k, e in enumerate(lower["exits"]):
        cells = [e["exit"], e["name"], f"{e['mflops']:.1f}", *_bound_cells(e)]
        rows.append(cells + (_bound_cells(serving["exits"][k]) if serving else []))
    batch = lower["exits"][0]["batch"]
    columns = ["accuracy", "batch 1 p50 ms", "batch 1 p99 ms", f"batch {batch}: images/s"]
    header = ["exit", "name", "MFLOPs", *(f"plain fp32: {c}" for c in columns)]
    note = ""
    if serving:
        header += [f"serving runner: {c}" for c in columns]
        note = (
            f"\n\n**Plain fp32**: the checkpoint's model as saved, float32, torchvision decode (what the LitServe "
            f"peer runs). **Serving runner**: our server's own runner (batch norms folded, {serving['precision']}"
            f"{', channels-last' if serving['channels_last'] else ''}, the server's decoder; stages and heads "
            f"called as the engine calls them): the lower bound our server is held to."
        )
    return (
        table(header, rows)
        + note
        + f"\n\nDecode alone (bytes → normalised tensor): p50 {ms(lower['decode_ms']['p50'])} ms. Accuracy over "
        f"{lower['images_accuracy']} images, latency over {lower['images_timing']}."
    )


def _fixed_exits_text(results: dict[str, Any]) -> str:
    """The oracle's choice made again from our server held to each exit, in the same phase of the run
    as the sweep (informative: the accuracy target stays on the oracle above)."""
    fixed = results["elastic"].get("fixed_exits_c1")
    if not fixed:
        return ""
    p99s = ", ".join(f"exit {f['exit']} {ms(f['server_ms'][QUANTILE])}" for f in fixed)
    return (
        "\n\nFixed exit on the server: the same choice made from our own server held to each exit (a compute "
        "budget of exactly that exit's MFLOPs) at concurrency 1, measured right after the sweep: the most "
        "accurate exit whose server-side p99 fits the budget. Its p99s: "
        f"{p99s} ms. It shows what a server that always answers from one exit would give in the same phase "
        "of this noisy machine; the accuracy target stays on the oracle above."
    )


def _budget_sweep(results: dict[str, Any]) -> str:
    fixed = {p["budget_ms"]: p for p in results["fixed_depth"]["c1"]}
    rows = []
    for p in results["elastic"]["budget_sweep_c1"]:
        f = fixed.get(p["budget_ms"], {})
        gap = None if p["oracle_accuracy"] is None or p["accuracy"] is None else p["accuracy"] - p["oracle_accuracy"]
        rows.append(
            [
                f"{p['budget_ms']:g}",
                pct(p["accuracy"]),
                "-" if p["oracle_exit"] is None else p["oracle_exit"],
                pct(p["oracle_accuracy"]),
                "-" if gap is None else f"{100 * gap:+.1f}",
                "-" if p.get("fixed_exit_fit") is None else p["fixed_exit_fit"],
                pct(p.get("fixed_exit_accuracy")),
                pct(p["server_hit_rate"], 2),
                late_text(p),
                pct(p["client_hit_rate"], 2),
                ms(p["server_ms"]["p50"]),
                ms(p["server_ms"]["p99"]),
                exits_text(p["exit_histogram"]),
                pct(f.get("server_hit_rate")),
                pct(f.get("accuracy_in_time")),
            ]
        )
    header = [
        "budget ms",
        "served accuracy",
        "oracle exit",
        "oracle accuracy",
        "served − oracle (points)",
        "fixed exit on the server: exit",
        "fixed exit on the server: accuracy",
        "in budget (server)",
        "late: exits (worst)",
        "in budget (client)",
        "server p50 ms",
        "server p99 ms",
        "exits",
        "fixed depth: in budget",
        "fixed depth: correct and in time",
    ]
    return table(header, rows)


def _load_sweep(results: dict[str, Any]) -> str:
    fixed = {(p["load"], p["budget_ms"]): p for p in results["fixed_depth"]["load"]}
    rows = []
    for p in results["elastic"]["load_sweep"]:
        f = fixed.get((p["load"], p["budget_ms"]), {})
        rows.append(
            [
                f"{p['load']:g}×",
                f"{p['rate']:.0f} ({p['offered_rps']:.0f})" if p.get("offered_rps") else f"{p['rate']:.0f}",
                f"{p['budget_ms']:g}",
                f"{p['sent']}{' †' if p.get('stopped_by_time') else ''}",
                p["rejected"],
                p["errors"],
                pct(p["server_hit_rate"], 2),
                late_text(p),
                pct(p["client_hit_rate_sent"], 2),
                pct(p["accuracy"]),
                ms(p["server_ms"]["p50"]),
                ms(p["server_ms"]["p99"]),
                f"{p['throughput_rps']:.0f}" if p["throughput_rps"] else "-",
                exits_text(p["exit_histogram"]),
                pct(f.get("server_hit_rate"), 2),
                f"{f['rejected']}/{f['sent']}" if f else "-",
            ]
        )
    header = [
        "load",
        "rate/s (offered)",
        "budget ms",
        "sent",
        "rejected",
        "errors",
        "in budget (server, accepted)",
        "late: exits (worst)",
        "in budget (client, all sent)",
        "accuracy",
        "server p50 ms",
        "server p99 ms",
        "answers/s",
        "exits",
        "fixed depth: in budget",
        "fixed depth: rejected",
    ]
    return table(header, rows)


def _bound_row(label: str, e: dict[str, Any]) -> list[str]:
    return [
        label,
        f"batch 1 / batch {e['batch']}",
        ms(e["batch1_ms"]["p50"]),
        ms(e["batch1_ms"]["p99"]),
        f"{e['batched_images_per_s']:.0f}" if e["batched_images_per_s"] else "-",
        "-",
    ]


def _peers(results: dict[str, Any]) -> str:
    lower = results["lower_bound"]
    ours = results["elastic"]
    rows = [_bound_row("in-process decode + forward, plain fp32 (LitServe's lower bound)", lower["exits"][-1])]
    if "serving" in lower:
        rows.append(_bound_row("in-process decode + forward, serving runner (ours)", lower["serving"]["exits"][-1]))
    rows += [
        _peer_row(
            "Elastic, no budget (full depth)", ours.get("settings", {}), ours["full_depth_c1"], ours["saturation"]
        ),
    ]
    if "full_depth_c1_raw" in ours:  # the same server, the image as the whole body: no multipart framing
        raw = _peer_row("Elastic, raw image body (`/v1/classify/raw`)", ours.get("settings", {}),
                        ours["full_depth_c1_raw"], {"throughput_rps": None, "client_ms": {"p50": None}})  # fmt: skip
        rows.append(raw)
    for name, peer in results["peers"].items():
        label = "LitServe" + (" batched" if name.endswith("batched") else "")
        batching = {"max_batch_size": peer["max_batch_size"], "max_batch_wait_ms": peer["batch_wait_ms"]}
        rows.append(_peer_row(label, batching, peer["c1"], peer["saturation"]))
    header = ["server", "batching", "c=1 p50 ms", "c=1 p99 ms", "saturation answers/s", "saturation p50 ms"]
    return table(header, rows)


def _peer_row(label: str, batching: dict[str, Any], c1: dict[str, Any], saturation: dict[str, Any]) -> list[Any]:
    batch = f"max {batching.get('max_batch_size', '?')}, wait {batching.get('max_batch_wait_ms', '?')} ms"
    return [
        label,
        batch,
        ms(c1["client_ms"]["p50"]),
        ms(c1["client_ms"]["p99"]),
        f"{saturation['throughput_rps']:.0f}" if saturation["throughput_rps"] else "-",
        ms(saturation["client_ms"]["p50"]),
    ]


def render(results: dict[str, Any], plots: dict[str, str], json_path: str) -> str:
    """The whole BENCHMARKS.md."""
    size = results["size"]
    reduced = ""
    if size != "full":
        reduced = (
            f"\n> **Reduced run (size `{size}`)**: few requests per point, so rates such as 99.9% cannot be "
            "resolved and the numbers are indicative only. `make bench` regenerates this file at full size.\n"
        )
    m = results["machine"]
    load = (m["load_average_at_start"] or [0.0])[0]
    if load > (m["usable_cores"] or 1) * 0.5:
        reduced += (
            f"\n> **Busy machine**: the 1-minute load average was {load:.1f} on {m['usable_cores']} cores when this "
            "run started, so other work competed for the CPU; latencies are inflated and noisier than on an idle "
            "machine.\n"
        )
    sat = results["elastic"]["saturation"]
    floor = eligible_budget_ms(results)
    return f"""# Benchmarks

<!-- Generated by `make bench` (`elastic bench suite`) from {json_path}. Do not edit by hand. -->
{reduced}
Elastic against its lower bound (the same checkpoint run in-process), an oracle, a fixed-depth
baseline (our server with no budget: every request runs to the final exit) and a peer server
(LitServe serving the same network at full depth), all in one run on one machine. The machine is
shared and noisy, so the targets are ratios from this one run.

## Machine

{_machine(results)}

## Commands

```bash
make bench
# which runs
{results["command"]}
```

A single point against any running server: `elastic bench load --url http://127.0.0.1:8000/v1/classify
--data ../shared/data/cifar10 --budgets 5,10 --mode open --rates 100 --requests 500`; the traffic shapes
with `--mode sparse --rates 5` (`--new-connection`: curl-like), `--mode burst --burst-sizes 16,32` and
`--mode hey --concurrency 16 --hey-qps 20`.

Checkpoint `{results["checkpoint"]}` (dataset: {results["dataset"]}); {results["images"]} test images from
`{results["data"]}`, posted as their JPEG bytes (multipart).

## Targets

{_targets(results)}

## Lower bound: in-process decode + forward

{_lower_bound(results)}

## Accuracy under a budget (closed loop, concurrency 1)

Server overhead (server-side p50 at full depth minus the serving runner's in-process p50):
{ms(results["server_overhead_ms"])} ms. The oracle picks, for each budget, the most accurate exit whose
in-process batch-1 {results["oracle_quantile"]} latency (serving runner) plus that overhead fits, and is
scored on the same images with the same arithmetic.{_fixed_exits_text(results)}

{_budget_sweep(results)}

![accuracy vs budget]({plots["accuracy_vs_budget"]})

## Hit rate under load (open loop, Poisson arrivals)

Load is a multiple of the full-depth saturation throughput ({sat["throughput_rps"]:.0f} answers/s, closed
loop at concurrency {sat["concurrency"]}). The hit-rate targets apply to budgets ≥ {floor:.2f} ms (exit 0 at
p99 plus overhead). Fixed depth: the same load with no budget, each answer scored against the budget.

{_load_sweep(results)}

![hit rate vs load]({plots["hit_rate_vs_load"]})

{traffic_shapes(results)}{front_ends_section(results)}## Peer server: LitServe at full depth

{_peers(results)}

## How it is measured

- The load generator (`benchmarks/loadgen.py`: a minimal keep-alive HTTP/1.1 client on uvloop,
  `benchmarks/http1.py`) runs in its own process, apart from the servers; each request is encoded
  whole (multipart body and headers) before its point starts. Closed loop: a fixed number of clients each
  waiting for its answer. Open loop: Poisson arrivals at a fixed rate, whatever the answers do.
- Every point stops at its request count or its time limit († after the count: stopped by time).
  Rejected = HTTP 503/429 (overloaded) or 422 `budget_too_small` (the budget is below exit 0 on this
  server): refused rather than answered late; errors = any other failure. "In budget (server)" is the server's
  `budget_met` over accepted requests, stamped when the engine has the answer (the way back to the
  request's handler and the response come after); "client" compares the client-side latency with the
  budget. "Late: exits (worst)" lists the exits the late answers came from and the most one missed
  by: a late answer from exit 0 waited or ran too long before its first exit; one from a deeper exit
  had a stage run past its prediction.
- Open-loop rate: the nominal Poisson rate and, in brackets, what the client really offered (requests
  over the span of their sends); the client shares the cores with the server, so under overload it
  may offer less than nominal.
- The fixed-depth baseline sends no budget (the server then runs to the final exit) and scores each
  answer's server-side latency against each budget after the fact.
- LitServe runs the same checkpoint with the same decode on the same device, one inference worker
  with the same torch threads, unbatched and with the same max batch size and wait as Elastic.
- Where the remaining time goes, what was tried and what was measured on other machines (16 cores,
  an H200): [docs/performance.md](docs/performance.md), [docs/gpu.md](docs/gpu.md).
"""
