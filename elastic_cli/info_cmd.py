"""`elastic info CHECKPOINT [--json]`."""

from __future__ import annotations

import argparse
import json
import sys

from elastic_anytime.models.checkpoint import CheckpointError, read_metadata
from elastic_anytime.models.pretrained import default_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")


def format_exits_table(meta: dict) -> str:
    exits = meta["exits"]
    full = exits[-1]["mflops"] or 1.0
    rows = [f"{'exit':>4}  {'stage':<22} {'MFLOPs':>10} {'% full':>7} {'params':>11} {'accuracy':>9}"]
    for e in exits:
        acc = "-" if e.get("accuracy") is None else f"{100 * e['accuracy']:.2f}%"
        share = 100 * e["mflops"] / full
        rows.append(f"{e['index']:>4}  {e['name']:<22} {e['mflops']:>10.2f} {share:>6.1f}% {e['params']:>11,} {acc:>9}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    path = args.checkpoint or default_checkpoint()
    try:
        meta = read_metadata(path)
    except CheckpointError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(meta, indent=2) + "\n")
        return 0
    arch = meta["arch"]
    args_text = ", ".join(f"{k}={v}" for k, v in arch.get("args", {}).items())
    lines = [
        f"checkpoint  {path}",
        f"model       {arch['name']}({args_text})",
        f"input       {'x'.join(str(v) for v in meta['input_size'])}  dataset: {meta.get('dataset') or '-'}",
        f"exits       {len(meta['exits'])}",
        "",
        format_exits_table(meta),
        "",
        f"classes ({len(meta['classes'])}): {', '.join(meta['classes'])}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
