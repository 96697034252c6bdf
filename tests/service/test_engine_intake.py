"""An engine that takes in its own jobs (`Engine.feed_from`, as in the inference process): the inference
thread reads them from a pipe while idle and between stages, and answers through each job's Reply on
that same thread."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
from engine_fixtures import STAGE_S, SlowDevice, make_engine, tiny_checkpoint

from models.checkpoint import Checkpoint
from service.engine import Answer, Engine, Job
from service.policy import Budget, Reason


class RecordingReply:
    """Keeps what the engine settled and on which thread."""

    def __init__(self) -> None:
        self.settled = threading.Event()
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.thread = ""

    def done(self) -> bool:
        return self.settled.is_set()

    def settle(self, answer: Answer | None, error: BaseException | None) -> None:
        self.answer, self.error, self.thread = answer, error, threading.current_thread().name
        self.settled.set()


class PipeIntake:
    """One byte down the pipe per job; the budgets to give them, in order."""

    def __init__(self, engine: Engine, budgets: list[Budget]) -> None:
        self.engine, self.budgets = engine, list(budgets)
        self.read_fd, self.write_fd = os.pipe()
        self.replies: list[RecordingReply] = []
        self.drains = 0
        engine.feed_from(self.read_fd, self.drain)

    def drain(self) -> bool:
        self.drains += 1
        data = os.read(self.read_fd, 4096)
        if not data:  # the writer closed its end
            return False
        for _ in data:
            reply = RecordingReply()
            self.replies.append(reply)
            self.engine.submit(Job(torch.rand(3, 32, 32), self.budgets.pop(0), self.engine.clock(), reply))
        return True

    def send(self, jobs: int = 1) -> None:
        os.write(self.write_fd, b"j" * jobs)

    def close(self) -> None:
        os.close(self.write_fd)


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return tiny_checkpoint()


def settled(replies: list[RecordingReply], timeout_s: float = 30.0) -> None:
    for reply in replies:
        assert reply.settled.wait(timeout_s)


def test_the_inference_thread_takes_jobs_in_and_answers_them_itself(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    intake = PipeIntake(engine, [Budget()] * 3)
    engine.start(calibrate_first=False)
    intake.send(3)
    while len(intake.replies) < 3:
        time.sleep(0.01)
    settled(intake.replies)
    assert all(r.error is None and r.answer.exit_index == runner.num_exits - 1 for r in intake.replies)
    assert {r.thread for r in intake.replies} == {"elastic-inference"}
    assert not engine._channels  # no event loop took part
    engine.stop(5.0)
    intake.close()


def test_a_job_that_arrives_mid_batch_is_seen_before_the_batch_goes_deeper(checkpoint: Checkpoint) -> None:
    # A (deadline 35 ms) runs alone and would reach its final exit at 30 ms. B (38 ms) arrives during A's
    # stage 0 and needs 10 ms for its first exit: taken in after that stage, it stops A at exit 1. Were it
    # read only once A's batch is done, A would go on to 30 ms and B would wait past its first exit.
    engine, clock, runner = make_engine(checkpoint, max_batch_size=1)
    t0 = clock.now
    intake = PipeIntake(engine, [Budget(deadline=t0 + 0.035), Budget(deadline=t0 + 0.038)])
    original_stage = SlowDevice.stage

    def stage(index: int, features: torch.Tensor) -> torch.Tensor:
        if len(intake.replies) == 1 and index == 0:
            intake.send()  # B arrives while A's stage 0 runs
        return original_stage(runner, index, features)

    runner.stage = stage  # type: ignore[method-assign]
    intake.send()  # A
    engine.start(calibrate_first=False)
    while len(intake.replies) < 2:
        time.sleep(0.01)
    settled(intake.replies)
    first, second = (r.answer for r in intake.replies)
    assert (first.exit_index, first.reason, first.budget_met) == (1, Reason.DEADLINE, True)
    assert (second.exit_index, second.budget_met) == (0, True)
    assert second.latency_s == pytest.approx(2 * STAGE_S)  # taken in at 10 ms, answered at 30 ms
    engine.stop(5.0)
    intake.close()


def test_a_closed_intake_is_let_go_and_the_engine_still_serves(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint)
    intake = PipeIntake(engine, [])
    engine.start(calibrate_first=False)
    intake.close()  # readable for good (end of file): watched still, the thread would spin on it
    time.sleep(0.3)
    assert intake.drains == 1
    reply = RecordingReply()
    engine.submit(Job(torch.rand(3, 32, 32), Budget(), engine.clock(), reply))  # from another thread, as ever
    settled([reply])
    assert reply.error is None and reply.thread == "elastic-inference"
    engine.stop(5.0)
