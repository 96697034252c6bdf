"""The process engine's server side, without its child: admission before decoding counts the jobs sent
and not answered, and the hand-off; an answer leaves the count. (tests/e2e/test_engine_process.py runs
the real child.)"""

from __future__ import annotations

import asyncio

import pytest
import torch

from elastic_anytime.service.engine.admission import BacklogError, DeadlineUnmeetableError
from elastic_anytime.service.engine.front_costs import SKIP_FIRST
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import Answer, EngineConfig, Job
from elastic_anytime.service.worker.client import EngineProcess

EXIT_0_S = 0.010


def make_engine(**config: object) -> EngineProcess:
    profile = LatencyProfile(3, [1, 2, 4, 8])
    for k in range(3):
        for b in (1, 2, 4, 8):
            profile.observe(k, b, EXIT_0_S, 0.0)
    settings = {"max_batch_size": 8, "reject_unmeetable": True, "handoff_quantile": None, **config}
    return EngineProcess({}, profile, EngineConfig(**settings))  # type: ignore[arg-type]


def test_jobs_sent_and_not_answered_count_as_a_backlog() -> None:
    engine, loop = make_engine(), asyncio.new_event_loop()
    now = engine.clock()
    engine.admit(Budget(deadline=now + 0.015), now)  # idle: exit 0 takes 10 ms
    jobs = [Job(torch.zeros(3, 32, 32), Budget(deadline=now + 0.012), now, loop.create_future()) for _ in range(16)]
    for job in jobs:
        engine.submit(job)  # not started: nothing is written, but the jobs count as sent
    with pytest.raises(BacklogError, match="16 requests are queued ahead"):
        engine.admit(Budget(deadline=now + 0.015), now)  # two batches of exit 0 come first
    engine.admit(Budget(deadline=now + 0.5), now)  # room for the backlog and its own exit 0
    engine.admit(Budget(), now)  # no deadline: never refused
    with pytest.raises(DeadlineUnmeetableError):
        engine.admit(Budget(deadline=now + 0.001), now)  # below exit 0 itself: 422, not overload
    answer = Answer(class_id=0, confidence=1.0, exit_index=0, mflops=1.0, latency_s=0.01, queue_s=0.0,
                    budget_met=True, reason=Reason.FINAL)  # fmt: skip
    for job_id in range(16):  # the child answers them all: the backlog is gone
        engine._handle(("answer", job_id, answer, []))
    assert all(job.future.done() for job in jobs)
    engine.admit(Budget(deadline=engine.clock() + 0.015), engine.clock())
    loop.close()


def test_the_hand_off_counts_in_admission_while_others_keep_the_loop_busy() -> None:
    engine = make_engine(handoff_quantile="p50")
    now = engine.clock()
    for _ in range(SKIP_FIRST + 20):
        engine.front_costs.observe_out(0.008, lone=False)  # answers reach their responses 8 ms after exit 0 lately
    assert engine.handoff_s == 0.0  # alone: its answer finds the loop idle
    with engine.arriving():
        engine.admit(Budget(deadline=now + 0.015), now)  # alone on the server: its answer finds the loop idle
    loop = asyncio.new_event_loop()
    engine.submit(Job(torch.zeros(3, 32, 32), Budget(), now, loop.create_future()))  # another one, no deadline
    with engine.arriving():
        assert engine.handoff_s == pytest.approx(0.008)
        with pytest.raises(BacklogError, match=r"1 other requests in the engine.*8\.0 ms to get out"):
            engine.admit(Budget(deadline=now + 0.015), now)
    loop.close()


def test_without_reject_unmeetable_nothing_is_refused() -> None:
    engine = make_engine(reject_unmeetable=False)
    now = engine.clock()
    engine.admit(Budget(deadline=now + 0.000001), now)
