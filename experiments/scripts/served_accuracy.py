"""Per-exit top-1 on a whole split in the server's arithmetic (serving runner: batch norms folded,
bf16 on CPU, the server's decoder) against the checkpoint as saved in float32 (torchvision decode).

    .venv/bin/python experiments/scripts/served_accuracy.py models/pretrained/cascade-cifar10 \
        --data ../shared/data/cifar10 --json runs/served.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from elastic_anytime.benchmarks.dataset import load_samples
from elastic_anytime.benchmarks.inprocess import exit_correctness
from elastic_anytime.benchmarks.serving_bound import correctness
from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.service.engine.runner import ModelRunner

log = logging.getLogger("served_accuracy")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    samples = load_samples(args.data, checkpoint.meta["classes"], args.count)
    with torch.inference_mode():
        plain = exit_correctness(checkpoint, samples)
    runner = ModelRunner(checkpoint, torch.device("cpu"), precision="auto")
    served = correctness(runner, samples)
    exits = checkpoint.model.num_exits
    rows = []
    for k in range(exits):
        fp32 = sum(r[k] for r in plain) / len(plain)
        bf16 = sum(r[k] for r in served) / len(served)
        rows.append({"exit": k, "fp32": fp32, "served": bf16, "gap_points": round(100 * (bf16 - fp32), 2)})
        log.info("exit %d: fp32 %.2f %%, served %.2f %% (%+.2f points)", k, 100 * fp32, 100 * bf16, 100 * (bf16 - fp32))
    report = {"checkpoint": str(args.checkpoint), "images": len(samples), "precision": runner.precision, "exits": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
