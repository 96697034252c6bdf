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

from elastic_anytime.models.checkpoint import Checkpoint
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import Answer, Job


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
    """One byte down the pipe per job; the budgets to give them, in order. Taking a job in costs
    `cost_s` of the engine's simulated clock."""

    def __init__(self, engine: Engine, budgets: list[Budget], cost_s: float = 0.0) -> None:
        self.engine, self.budgets, self.cost_s = engine, list(budgets), cost_s
        self.read_fd, self.write_fd = os.pipe()
        self.replies: list[RecordingReply] = []
        self.drains = 0
        self.deliveries: list[int] = []  # how many replies were settled at each call of deliver
        engine.feed_from(self.read_fd, self.drain, self.deliver)

    def deliver(self) -> None:
        self.deliveries.append(sum(reply.done() for reply in self.replies))

    def drain(self) -> bool:
        self.drains += 1
        data = os.read(self.read_fd, 4096)
        if not data:  # the writer closed its end
            return False
        for _ in data:
            reply = RecordingReply()
            self.replies.append(reply)
            self.engine.submit(Job(torch.rand(3, 32, 32), self.budgets.pop(0), self.engine.clock(), reply))
            if self.cost_s:
                self.engine.clock.now += self.cost_s  # type: ignore[attr-defined]  # the simulated clock
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


def second_arrives_during_first_stage_0(runner: SlowDevice, intake: PipeIntake) -> None:
    """The second job (B) is sent while the first one's (A's) stage 0 runs."""

    def stage(index: int, features: torch.Tensor) -> torch.Tensor:
        if len(intake.replies) == 1 and index == 0:
            intake.send()
        return SlowDevice.stage(runner, index, features)

    runner.stage = stage  # type: ignore[method-assign]


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
    assert not engine.sink._channels  # no event loop took part
    engine.stop(5.0)
    intake.close()


def test_a_job_that_arrives_mid_batch_is_seen_before_the_batch_goes_deeper(checkpoint: Checkpoint) -> None:
    # A (deadline 35 ms) runs alone and would reach its final exit at 30 ms. B (38 ms) arrives during A's
    # stage 0 and needs 10 ms for its first exit: taken in after that stage, it stops A at exit 1. Were it
    # read only once A's batch is done, A would go on to 30 ms and B would wait past its first exit.
    engine, clock, runner = make_engine(checkpoint, max_batch_size=1)
    t0 = clock.now
    intake = PipeIntake(engine, [Budget(deadline=t0 + 0.035), Budget(deadline=t0 + 0.038)])
    second_arrives_during_first_stage_0(runner, intake)
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


def test_the_answers_of_an_exit_are_all_made_before_they_are_delivered(checkpoint: Checkpoint) -> None:
    # three jobs in one batch, all stopped by their deadline at exit 0 (10 ms; exit 1 would answer at 20)
    engine, clock, _ = make_engine(checkpoint)
    intake = PipeIntake(engine, [Budget(deadline=clock.now + 0.015)] * 3)
    intake.send(3)
    engine.start(calibrate_first=False)
    while len(intake.replies) < 3:
        time.sleep(0.01)
    settled(intake.replies)
    assert all(r.answer.exit_index == 0 and r.answer.budget_met for r in intake.replies)
    time.sleep(0.05)
    assert intake.deliveries == [3]  # once, after the third answer
    engine.stop(5.0)
    intake.close()


def test_taking_jobs_in_between_stages_counts_in_the_stage_time(checkpoint: Checkpoint) -> None:
    # B arrives during A's stage 0 and taking it in costs 1 ms: the profile sees stage 0 at 11 ms, and
    # the whole exit (decisions, head read, answers) as exit 0's head time
    engine, clock, runner = make_engine(checkpoint, head_s=0.002)
    observed: list[tuple[str, int, float]] = []
    observe, observe_head = engine.profile.observe, engine.profile.observe_head
    engine.profile.observe = lambda k, b, s, h=None, c=False: (
        observed.append(("stage", k, s)),
        observe(k, b, s, h, c),
    )[1]
    engine.profile.observe_head = lambda k, b, s, c=False: (observed.append(("head", k, s)), observe_head(k, b, s, c))[
        1
    ]
    t0 = clock.now
    intake = PipeIntake(engine, [Budget(deadline=t0 + 0.015), Budget()], cost_s=0.001)
    second_arrives_during_first_stage_0(runner, intake)
    intake.send()  # A: stopped at exit 0 by its deadline
    engine.start(calibrate_first=False)
    while len(intake.replies) < 2:
        time.sleep(0.01)
    settled(intake.replies)
    engine.stop(5.0)
    intake.close()
    assert ("stage", 0, pytest.approx(STAGE_S + 0.001)) in observed
    assert ("head", 0, pytest.approx(0.002)) in observed
