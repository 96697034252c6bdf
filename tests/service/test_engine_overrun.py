"""The overrun watch in the engine, in real time: a stage that stalls past a request's deadline gets
that request answered from the last exit it passed, once, and the rest of the batch goes on."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from models.checkpoint import Checkpoint
from service.engine import Answer, Engine, EngineConfig, Job
from service.policy import Budget, Reason
from service.profile import LatencyProfile
from service.runner import ModelRunner
from tests.service.engine_fixtures import tiny_checkpoint

STALL_S = 2.0  # how long the stalling stage would take if nothing released it


class StallingRunner(ModelRunner):
    """The real runner; stage `stall_at` of the first batch waits (up to STALL_S) until released."""

    def __init__(self, checkpoint: Checkpoint, stall_at: int) -> None:
        super().__init__(checkpoint, torch.device("cpu"))
        self.stall_at, self.release = stall_at, threading.Event()
        self.stage_sizes: list[tuple[int, int]] = []  # (stage, rows) of every stage run

    def stage(self, index, features):  # type: ignore[no-untyped-def]
        self.stage_sizes.append((index, features.shape[0]))
        if index == self.stall_at and len(self.stage_sizes) <= self.stall_at + 1:
            self.release.wait(STALL_S)
        return super().stage(index, features)


class RecordingReply:
    """A job's reply that keeps every settle (the engine must settle each job once)."""

    def __init__(self) -> None:
        self.settles: list[tuple[Answer | None, BaseException | None]] = []
        self.settled = threading.Event()

    def done(self) -> bool:
        # never: two threads may both read "not done" before either settles, so one answer per job must
        # come from the engine's claim, not from this check
        return False

    def settle(self, answer: Answer | None, error: BaseException | None) -> None:
        self.settles.append((answer, error))
        self.settled.set()


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return tiny_checkpoint()


def serve(runner: ModelRunner, **config) -> Engine:
    profile = LatencyProfile(runner.num_exits, [1, 2, 4, 8])
    for k in range(runner.num_exits):  # 1 ms stages: every budget below reaches the final exit on paper
        for b in (1, 2, 4, 8):
            profile.observe(k, b, 0.001, 0.0001)
    cfg = EngineConfig(max_batch_size=8, max_wait_s=0.0, margin_s=0.0, handoff_quantile=None, **config)
    return Engine(runner, profile, cfg, clock=time.monotonic)


def submit_batch(engine: Engine, budgets_s: list[float | None], top_k: int | None = None) -> list[RecordingReply]:
    """Queue one job per budget, then start the engine: they form its first batch."""
    replies = [RecordingReply() for _ in budgets_s]
    now = time.monotonic()
    for budget_s, reply in zip(budgets_s, replies, strict=True):
        deadline = None if budget_s is None else now + budget_s
        torch.manual_seed(len(replies))
        engine.submit(Job(torch.rand(3, 32, 32), Budget(deadline=deadline), now, reply, top_k=top_k))
    engine.start(calibrate_first=False)
    return replies


def test_a_stalled_stage_is_answered_at_the_deadline_from_the_exit_before(checkpoint: Checkpoint) -> None:
    runner = StallingRunner(checkpoint, stall_at=1)  # the tiny model has 3 exits
    assert runner.reads_aside
    engine = serve(runner)
    try:
        late, no_deadline = submit_batch(engine, [0.15, None])
        assert late.settled.wait(STALL_S / 2), "the overrun watch did not answer before the stall ended"
        answer, error = late.settles[0]
        assert error is None and answer is not None
        assert (answer.exit_index, answer.reason) == (0, Reason.OVERRUN)  # exit 0: the last one passed
        assert answer.latency_s < 0.15 + 0.1  # at its deadline (give or take a busy machine), not after the stall
        assert answer.mflops == pytest.approx(runner.direct_mflops[0])
        assert 0 <= answer.class_id < 10 and 0.0 < answer.confidence <= 1.0
        runner.release.set()
        assert no_deadline.settled.wait(5)
        final, _ = no_deadline.settles[0]
        assert (final.exit_index, final.reason) == (2, Reason.FINAL)
    finally:
        runner.release.set()
        engine.stop()
    assert len(late.settles) == 1 and len(no_deadline.settles) == 1  # each answered once
    # the request answered on overrun left the batch: the stage after the stall ran for the other one alone
    assert runner.stage_sizes == [(0, 2), (1, 2), (2, 1)]


def test_the_answer_from_the_earlier_exit_is_the_one_that_exit_gives(checkpoint: Checkpoint) -> None:
    runner = StallingRunner(checkpoint, stall_at=2)  # the final stage: answered from exit 1
    engine = serve(runner)
    try:
        (reply,) = submit_batch(engine, [0.1], top_k=3)
        assert reply.settled.wait(STALL_S / 2)
    finally:
        runner.release.set()
        engine.stop()
    answer, _ = reply.settles[0]
    assert (answer.exit_index, answer.reason) == (1, Reason.OVERRUN)
    torch.manual_seed(1)  # the job's image, as submit_batch made it
    features = runner.batch([torch.rand(3, 32, 32)])
    probs, confidence, class_id = runner.read_exit(1, runner.stage(1, runner.stage(0, features)))
    assert answer.class_id == class_id[0]
    assert answer.confidence == pytest.approx(confidence[0], rel=1e-3)
    assert [c for c, _ in answer.top_k] == probs[0].topk(3).indices.tolist()


def test_without_the_watch_the_stalled_request_is_answered_late_from_the_deeper_exit(checkpoint: Checkpoint) -> None:
    runner = StallingRunner(checkpoint, stall_at=2)
    engine = serve(runner, overrun_answers=False)
    try:
        (reply,) = submit_batch(engine, [0.05])
        assert not reply.settled.wait(0.3)  # nothing answers it during the stall
        runner.release.set()
        assert reply.settled.wait(5)
    finally:
        runner.release.set()
        engine.stop()
    answer, _ = reply.settles[0]
    assert answer.exit_index >= 2 and not answer.budget_met


def test_a_request_answered_in_time_is_not_answered_again(checkpoint: Checkpoint) -> None:
    runner = StallingRunner(checkpoint, stall_at=99)  # never stalls
    engine = serve(runner)
    try:
        replies = submit_batch(engine, [0.2, 0.2, 0.05])
        for reply in replies:
            assert reply.settled.wait(5)
        time.sleep(0.3)  # past every deadline: the watch's entries come due and find them answered
    finally:
        engine.stop()
    for reply in replies:
        assert len(reply.settles) == 1
        answer, _ = reply.settles[0]
        assert answer.reason is not Reason.OVERRUN
