"""Does the engine's non-streaming path cost more after a change? Times `Engine._run` on batches of
requests that are not streamed, in two source trees, in fresh processes that alternate (this VM
drifts), and prints each tree's median per batch and the median of the per-round differences.

Two runners: the shipped model on the CPU (what a batch really costs), and a null runner whose stages
and heads cost nothing, so that the engine's own Python bookkeeping per batch is what is timed.

    git worktree add -f /tmp/base <commit before the change>
    python experiments/scripts/engine_batch_ab.py /tmp/base . --rounds 6
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("engine_batch_ab")
ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models/pretrained/resnet9-cifar10"
CASES = [("model", 1), ("model", 8), ("null", 1), ("null", 8)]


class NullReply:
    """A job's answer, kept nowhere (no event loop in the measurement)."""

    def __init__(self) -> None:
        self._done = False

    def done(self) -> bool:
        return self._done

    def settle(self, answer: Any, error: BaseException | None) -> None:
        self._done = True


class NullRunner:
    """The runner's hooks with no work in them: what is left is the engine's own bookkeeping."""

    def __init__(self, model_runner: Any) -> None:
        self.num_exits = model_runner.num_exits
        self.direct_mflops, self.head_mflops = model_runner.direct_mflops, model_runner.head_mflops

    def batch(self, tensors: list[Any]) -> list[Any]:
        return tensors

    def stage(self, index: int, features: list[Any]) -> list[Any]:
        return features

    def select(self, features: list[Any], rows: list[int]) -> list[Any]:
        return [features[r] for r in rows]

    def read_exit(self, index: int, features: list[Any], rows: list[int] | None = None) -> tuple:
        n = len(features) if rows is None else len(rows)
        return None, [0.5] * n, [0] * n

    def top_k(self, probs: Any, row: int, k: int) -> list[tuple[int, float]]:
        return [(0, 0.5)]


def worker(batches: int) -> dict[str, float]:
    """In the tree given as the working directory: median µs per batch of each case."""
    import torch

    from elastic_anytime.models.checkpoint import load_checkpoint
    from elastic_anytime.service.engine import scheduler
    from elastic_anytime.service.engine.policy import Budget
    from elastic_anytime.service.engine.profile import LatencyProfile
    from elastic_anytime.service.engine.runner import ModelRunner
    from elastic_anytime.service.engine.scheduler import Engine
    from elastic_anytime.service.engine.types import EngineConfig, Job

    torch.set_num_threads(1)
    model = ModelRunner(load_checkpoint(CHECKPOINT), torch.device("cpu"), precision="fp32")

    assert Path(scheduler.__file__).resolve().is_relative_to(Path.cwd().resolve()), scheduler.__file__
    results = {}
    for kind, size in CASES:
        runner = model if kind == "model" else NullRunner(model)
        profile = LatencyProfile(model.num_exits, [1, 2, 4, 8])
        for k in range(model.num_exits):
            for b in (1, 2, 4, 8):
                profile.observe(k, b, 0.0005, 0.0001)
        engine = Engine(runner, profile, EngineConfig(max_batch_size=8))
        tensor = torch.rand(3, 32, 32)
        times = []
        with torch.inference_mode():
            for n in range(batches + 20):
                far = engine.clock() + 10.0  # a deadline that never stops it: the policy runs, full depth
                jobs = [Job(tensor, Budget(deadline=far), engine.clock(), NullReply()) for _ in range(size)]
                started = time.perf_counter()
                engine._run(jobs)
                if n >= 20:  # warm-up batches left out
                    times.append(time.perf_counter() - started)
        results[f"{kind} batch {size}"] = statistics.median(times) * 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # the tree to time is the working directory: its `service` first on the path
        sys.path.insert(0, str(Path.cwd()))
        print(json.dumps(worker(args.batches)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs: list[list[dict[str, float]]] = [[], []]
    for round_ in range(args.rounds):
        for side in (0, 1) if round_ % 2 == 0 else (1, 0):
            command = [sys.executable, __file__, "--worker", "--batches", str(args.batches), *args.trees]
            output = subprocess.run(command, cwd=args.trees[side], capture_output=True, text=True, check=True)
            runs[side].append(json.loads(output.stdout.strip().splitlines()[-1]))
    for case in runs[0][0]:
        first = [r[case] for r in runs[0]]
        second = [r[case] for r in runs[1]]
        diffs = [b - a for a, b in zip(first, second, strict=True)]
        diff = statistics.median(diffs)
        log.info("%-14s rounds, second minus first: %s µs", case, " ".join(f"{d:+.1f}" for d in diffs))
        log.info("%-14s %s: %8.1f µs  %s: %8.1f µs  second minus first (median of rounds): %+7.1f µs (%+.1f%%)",
                 case, args.trees[0], statistics.median(first), args.trees[1], statistics.median(second), diff,
                 100 * diff / statistics.median(first))  # fmt: skip


if __name__ == "__main__":
    main()
