"""Elastic vs baseline: read pairs of finished runs (`metrics.json`), write a Markdown table and one
combined anytime plot. `python -m elastic_anytime.training.compare RUNS --pair "Label=exits_run,final_run" …`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elastic_anytime.training.report import plot_comparison

log = logging.getLogger(__name__)


@dataclass
class Run:
    name: str
    exits: list[dict[str, Any]]  # metadata exits: index, name, mflops, params, accuracy
    epochs: int
    train_seconds: float
    wall_seconds: float | None

    @property
    def final_accuracy(self) -> float:
        return self.exits[-1]["accuracy"]


def load_run(runs: Path, name: str, wall: dict[str, float]) -> Run:
    path = runs / name / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: has run {name!r} finished?")
    metrics = json.loads(path.read_text())
    history = metrics["history"]
    return Run(name, metrics["final"], len(history), sum(r["seconds"] for r in history), wall.get(name))


def read_wall_seconds(runs: Path) -> dict[str, float]:
    """`wall_seconds.tsv` lines `name<TAB>seconds` (written by scripts/reproduce.sh); last one wins."""
    path = runs / "wall_seconds.tsv"
    if not path.is_file():
        return {}
    rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip())
    return {name: float(seconds) for name, seconds in rows}


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def accuracy_at(exits: list[dict[str, Any]], fraction: float) -> float:
    """Accuracy of the deepest exit whose cost is at most `fraction` of the full cost (0 if none)."""
    full = exits[-1]["mflops"]
    fitting = [e for e in exits if e["mflops"] <= fraction * full + 1e-9]
    return fitting[-1]["accuracy"] if fitting else 0.0


def markdown(pairs: dict[str, tuple[Run, Run]]) -> str:
    """Summary table, then one per-exit table per elastic run."""
    lines = [
        "| backbone | exits | MFLOPs (full) | final exit, with exits | final exit, `--exits final` | Δ (points) "
        "| best exit ≤25% / ≤50% compute | wall min (exits / final) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, (elastic, base) in pairs.items():
        delta = 100 * (elastic.final_accuracy - base.final_accuracy)
        at = f"{100 * accuracy_at(elastic.exits, 0.25):.2f} / {100 * accuracy_at(elastic.exits, 0.5):.2f}"
        lines.append(
            f"| {label} | {len(elastic.exits)} | {elastic.exits[-1]['mflops']:.1f} "
            f"| {100 * elastic.final_accuracy:.2f} | {100 * base.final_accuracy:.2f} | {delta:+.2f} | {at} "
            f"| {_minutes(elastic.wall_seconds)} / {_minutes(base.wall_seconds)} |"
        )
    for label, (elastic, _) in pairs.items():
        full = elastic.exits[-1]["mflops"]
        lines += ["", f"**{label}** ({elastic.name}), per exit:", ""]
        lines += ["| exit | after block | MFLOPs | % of full | top-1 % |", "|---:|---|---:|---:|---:|"]
        lines += [
            f"| {e['index']} | {e['name']} | {e['mflops']:.1f} | {100 * e['mflops'] / full:.0f} "
            f"| {100 * e['accuracy']:.2f} |"
            for e in elastic.exits
        ]
    return "\n".join(lines) + "\n"


def _parse_pair(text: str) -> tuple[str, str, str]:
    label, sep, names = text.rpartition("=")  # labels may hold "=" (k=12); run names do not
    elastic, comma, base = names.partition(",")
    if not (sep and comma and label and elastic and base):
        raise argparse.ArgumentTypeError(f"--pair takes 'Label=exits_run,final_run', got {text!r}")
    return label, elastic, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elastic_anytime.training.compare", description=__doc__)
    parser.add_argument("runs", type=Path, help="folder holding the run folders")
    parser.add_argument("--pair", type=_parse_pair, action="append", required=True, metavar="LABEL=EXITS,FINAL")
    parser.add_argument("--png", type=Path, help="combined anytime plot")
    parser.add_argument("--markdown", type=Path, help="write the tables here (always printed)")
    args = parser.parse_args(argv)
    wall = read_wall_seconds(args.runs)
    try:
        pairs = {label: (load_run(args.runs, e, wall), load_run(args.runs, b, wall)) for label, e, b in args.pair}
    except FileNotFoundError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    text = markdown(pairs)
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.png:
        curves = {
            label: (
                [e["mflops"] for e in el.exits],
                [e["accuracy"] for e in el.exits],
                base.exits[-1]["mflops"],
                base.final_accuracy,
            )
            for label, (el, base) in pairs.items()
        }
        plot_comparison(curves, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
