"""Hot reload inside the engine: `swap_model` switches runner and profile between two batches, so no
batch mixes models, queued jobs are still answered, and every answer names the runner that made it.
Real runners (two tiny models with different classes) and the real inference thread."""

from __future__ import annotations

import asyncio
import threading

import torch

from elastic_anytime.models.checkpoint import Checkpoint, build_metadata
from elastic_anytime.models.registry import create_model
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import Answer, EngineConfig, Job


class RecordingRunner(ModelRunner):
    """The real runner; it logs (its name, batch size) for every batch it starts, into a shared list."""

    def __init__(self, name: str, classes: list[str], log: list[tuple[str, int]]) -> None:
        torch.manual_seed(len(name))
        model = create_model("tiny", num_classes=len(classes)).eval()
        meta = build_metadata(model, "tiny", {"num_classes": len(classes)}, classes, (3, 32, 32), [0.5] * 3, [0.25] * 3)
        super().__init__(Checkpoint(model=model, meta=meta), torch.device("cpu"))
        self.name, self.log, self.gate = name, log, threading.Event()
        self.gate.set()

    def batch(self, tensors):  # type: ignore[no-untyped-def]
        self.gate.wait(10)  # a test may hold a batch at its start to queue work behind it
        self.log.append((self.name, len(tensors)))
        return super().batch(tensors)


def profile_for(runner: ModelRunner) -> LatencyProfile:
    profile = LatencyProfile(runner.num_exits, [1, 2, 4])
    for k in range(runner.num_exits):
        for b in (1, 2, 4):
            profile.observe(k, b, 0.001, 0.0001)
    return profile


def test_swap_between_batches_answers_everything_with_the_right_runner() -> None:
    batches: list[tuple[str, int]] = []
    old = RecordingRunner("old", [f"old{i}" for i in range(10)], batches)
    new = RecordingRunner("new", [f"new{i}" for i in range(4)], batches)
    engine = Engine(old, profile_for(old), EngineConfig(max_batch_size=4, max_wait_s=0.0))

    async def main() -> tuple[list[Answer], list[Answer], bool]:
        loop = asyncio.get_running_loop()

        def submit(n: int) -> list[Job]:
            jobs = [Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()) for _ in range(n)]
            for job in jobs:
                engine.submit(job)
            return jobs

        old.gate.clear()  # hold the first batch at its start ...
        before = submit(3)  # queued before the thread starts: one batch
        engine.start(calibrate_first=False)
        await asyncio.sleep(0.2)
        queued = submit(6)  # ... so these wait in the queue while the swap is asked for
        swapped = loop.run_in_executor(None, engine.swap_model, new, profile_for(new), 10.0)
        await asyncio.sleep(0.1)
        old.gate.set()
        ok = await swapped
        after = submit(3)
        answers = await asyncio.wait_for(asyncio.gather(*(j.future for j in before + queued + after)), 30)
        await asyncio.to_thread(engine.stop, 5.0)
        return answers[: len(before)], answers[len(before) :], ok

    first, rest, ok = asyncio.run(main())
    assert ok
    assert batches[0] == ("old", 3)  # the batch running when the swap came finished on the old model
    assert all(name == "new" for name, _ in batches[1:])  # everything after it ran on the new one
    assert sum(size for _, size in batches) == 12  # every job answered exactly once
    assert all(a.runner is old and 0 <= a.class_id < 10 for a in first)
    assert all(a.runner is new and 0 <= a.class_id < 4 for a in rest)  # class ids index the new classes
    assert engine.runner is new and engine.profile.num_exits == new.num_exits


def test_swap_applies_when_idle_and_before_start() -> None:
    log: list[tuple[str, int]] = []
    old = RecordingRunner("old", ["a", "b"], log)
    new = RecordingRunner("new", ["c", "d", "e"], log)
    engine = Engine(old, profile_for(old))
    assert engine.swap_model(new, profile_for(new), 1.0) and engine.runner is new  # not started: at once
    engine.start(calibrate_first=False)
    engine.ready.wait(5)
    assert engine.swap_model(old, profile_for(old), 5.0) and engine.runner is old  # idle thread wakes to take it
    engine.stop(5.0)
