"""The two plots of BENCHMARKS.md: accuracy vs budget, and hit rate vs load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

from elastic_anytime.benchmarks.targets import serving_exits


def _pct(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else 100 * v for v in values]


def accuracy_vs_budget(results: dict[str, Any], path: Path) -> Path:
    sweep = results["elastic"]["budget_sweep_c1"]
    budgets = [p["budget_ms"] for p in sweep]
    fixed = results["fixed_depth"]["c1"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(budgets, _pct([p["accuracy"] for p in sweep]), "o-", label="Elastic (served)")
    ax.plot(budgets, _pct([p["oracle_accuracy"] for p in sweep]), "s--", label="oracle (best single exit that fits)")
    ax.plot(budgets, _pct([p["accuracy_in_time"] for p in fixed]), "^:", label="fixed depth: correct and in time")
    for e in serving_exits(results):  # per-exit accuracy with the served arithmetic
        ax.axhline(100 * e["accuracy"], color="grey", lw=0.5, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("budget_ms (concurrency 1)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy under a latency budget (grey: per-exit accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


MISS_FLOOR = 1e-4  # a point with no miss is drawn here on the log scale


def hit_rate_vs_load(results: dict[str, Any], path: Path) -> Path:
    points = results["elastic"]["load_sweep"]
    fixed = results["fixed_depth"]["load"]
    budgets = sorted({p["budget_ms"] for p in points})
    fig, (hits, misses) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, budget in enumerate(budgets):
        color = colors[i % len(colors)]
        # a point where every request was refused has no hit rate: nothing to draw there
        ours = sorted((p["load"], p["server_hit_rate"]) for p in points if p["budget_ms"] == budget)
        ours = [(load, rate) for load, rate in ours if rate is not None]
        base = sorted((p["load"], p["server_hit_rate"]) for p in fixed if p["budget_ms"] == budget)
        base = [(load, rate) for load, rate in base if rate is not None]
        if not ours:
            continue
        loads, rates = zip(*ours, strict=True)
        hits.plot(loads, rates, "o-", color=color, label=f"{budget:g} ms")
        if base:
            hits.plot(*zip(*base, strict=True), "x:", color=color, alpha=0.7)
        misses.plot(loads, [max(1 - r, MISS_FLOOR) for r in rates], "o-", color=color, label=f"{budget:g} ms")
    hits.set_ylim(-0.02, 1.02)
    hits.set_ylabel("answers inside budget_ms (server-side, accepted)")
    hits.set_title("Elastic (solid) vs fixed depth (dotted)")
    hits.legend(title="budget", fontsize=8)
    for level, label in ((1e-3, "0.1%"), (1e-2, "1%")):
        misses.axhline(level, color="black", lw=0.6, ls="--")
        misses.text(misses.get_xlim()[0], level, f" {label}", va="bottom", fontsize=8)
    misses.set_yscale("log")
    misses.set_ylim(MISS_FLOOR / 2, 1.5)
    misses.set_ylabel("late answers (1 − hit rate, log; none drawn at 0.01%)")
    misses.set_title("Elastic: late answers (targets: < 0.1% to 0.8×, < 1% at 2×)")
    for ax in (hits, misses):
        ax.set_xlabel("offered load (× full-depth saturation throughput)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "accuracy_vs_budget": accuracy_vs_budget(results, directory / "accuracy_vs_budget.png"),
        "hit_rate_vs_load": hit_rate_vs_load(results, directory / "hit_rate_vs_load.png"),
    }
