"""How much a GIL-hungry thread slows the model down: the full path at batch 1 with the serving runner,
eager and as TorchScript-frozen stages, on a quiet process and with a thread that keeps the GIL busy
(the worst case for the server's event loop). docs/performance.md quotes its output.

    python experiments/scripts/gil_contention.py --switch-interval 0.0001
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.runner import ModelRunner


class Stage(nn.Module):
    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.run_stage(self.index, features)


def percentiles(run: Callable[[], object], count: int) -> str:
    for _ in range(20):
        run()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    times.sort()
    return f"p50 {times[count // 2]:.2f} p95 {times[int(count * 0.95)]:.2f} p99 {times[int(count * 0.99)]:.2f} ms"


@contextlib.contextmanager
def gil_hog() -> Iterator[None]:
    """A thread that keeps the GIL busy (pure Python, never blocking) while the block runs."""
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            sum(i * i for i in range(200))

    thread = threading.Thread(target=hog)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def quiet_and_busy(runs: dict[str, Callable[[], object]], count: int) -> None:
    """Print the percentiles of each run alone, then each run with a GIL hog."""
    for name, run in runs.items():
        print(f"{name} quiet", percentiles(run, count))
    with gil_hog():
        for name, run in runs.items():
            print(f"{name} busy ", percentiles(run, count))


def setup(runs: int) -> tuple[argparse.Namespace, ModelRunner]:
    """--switch-interval and --runs from the command line, applied; the shipped checkpoint's serving runner."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--switch-interval", type=float, default=0.0001)
    parser.add_argument("--runs", type=int, default=runs)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.setswitchinterval(args.switch_interval)
    return args, ModelRunner(load_checkpoint(default_checkpoint()), torch.device("cpu"), precision="auto")


def main() -> None:
    args, runner = setup(300)
    for parameter in runner.model.parameters():
        parameter.requires_grad_(False)
    x = runner.batch([torch.randn(*runner.input_size)])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace/freeze are deprecated
        traced, features = [], x
        for k in range(runner.num_exits):
            traced.append(torch.jit.freeze(torch.jit.trace(Stage(runner.model, k).eval(), (features,))))
            features = runner.model.run_stage(k, features)

    def eager() -> None:
        with torch.inference_mode():
            features = x
            for k in range(runner.num_exits):
                features = runner.model.run_stage(k, features)

    def frozen() -> None:
        with torch.inference_mode():
            features = x
            for stage in traced:
                features = stage(features)

    print(f"switch interval {args.switch_interval * 1e3:g} ms")
    quiet_and_busy({"eager ": eager, "traced": frozen}, args.runs)


if __name__ == "__main__":
    main()
