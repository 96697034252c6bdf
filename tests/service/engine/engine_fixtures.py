"""The engine's test set-up, shared by the engine's test files: the real runner on the tiny model, on a
simulated device whose every stage takes STAGE_S of simulated time."""

from __future__ import annotations

import torch

from elastic_anytime.models.checkpoint import Checkpoint, build_metadata
from elastic_anytime.models.registry import create_model
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import EngineConfig

STAGE_S = 0.010
CLASSES = [f"c{i}" for i in range(10)]


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowDevice(ModelRunner):
    """The real runner, on a device whose every stage takes exactly STAGE_S of simulated time and
    every exit-head read `head_s`. It records the batch sizes and which rows each head read got."""

    def __init__(self, checkpoint: Checkpoint, clock: SimulatedClock, head_s: float = 0.0) -> None:
        super().__init__(checkpoint, torch.device("cpu"))
        self.clock = clock
        self.head_s = head_s
        self.batch_sizes: list[int] = []
        self.reads: list[tuple[int, int]] = []  # (exit, rows read)

    def stage(self, index, features):  # type: ignore[no-untyped-def]
        if index == 0:
            self.batch_sizes.append(features.shape[0])
        self.clock.now += STAGE_S
        return super().stage(index, features)

    def read_exit(self, index, features, rows=None):  # type: ignore[no-untyped-def]
        self.reads.append((index, features.shape[0] if rows is None else len(rows)))
        self.clock.now += self.head_s
        return super().read_exit(index, features, rows)


def tiny_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    meta = build_metadata(model, "tiny", {}, CLASSES, (3, 32, 32), [0.5] * 3, [0.25] * 3)
    return Checkpoint(model=model, meta=meta)


def make_engine(checkpoint: Checkpoint, head_s: float = 0.0, **config) -> tuple[Engine, SimulatedClock, SlowDevice]:
    clock = SimulatedClock()
    runner = SlowDevice(checkpoint, clock, head_s)
    profile = LatencyProfile(runner.num_exits, [1, 2, 4, 8])
    for k in range(runner.num_exits):  # a calibrated profile of the simulated device
        for b in (1, 2, 4, 8):
            profile.observe(k, b, STAGE_S, head_s)
    defaults = {"max_batch_size": 8, "max_wait_s": 0.0, "margin_s": 0.0}
    engine = Engine(runner, profile, EngineConfig(**{**defaults, **config}), clock=clock)
    return engine, clock, runner
