"""The live accuracy guardrail (service.engine.guardrail): which answers are sampled, the bounded pool, one stage per
step, the baseline picked for a sample, and in the engine: re-runs only while idle, yielding to a request
between two stages and resuming after it, counted through the observer (and so through the process
engine's relay into the server's metrics)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch
from engine_fixtures import make_engine, tiny_checkpoint
from prometheus_client import CollectorRegistry

from elastic_anytime.models.checkpoint import Checkpoint
from elastic_anytime.service.engine.guardrail import Guardrail, Verdict, expected_agreement, make_guardrail
from elastic_anytime.service.engine.idle_work import idle_wait_s
from elastic_anytime.service.engine.policy import Budget, Reason
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import EngineConfig, Job
from elastic_anytime.service.http.metrics import Metrics
from elastic_anytime.service.settings import Settings
from elastic_anytime.service.worker.client import EngineProcess

TABLE = {
    "thresholds": [0.5, 0.9],
    "exits": [
        {"all": 0.7, "confident": [0.9, None]},
        {"all": 0.8, "confident": [0.95, 0.99]},
        {"all": 1.0, "confident": [1.0, 1.0]},
    ],
}


class StagedRunner:
    """A runner with the hooks the guardrail calls: it records them, and its final exit answers `final`."""

    def __init__(self, num_exits: int = 3, final: int = 1, meta: dict[str, Any] | None = None) -> None:
        self.num_exits, self.final, self.meta = num_exits, final, meta if meta is not None else {"agreement": TABLE}
        self.calls: list[tuple] = []
        self.fail_at: int | None = None

    def batch(self, tensors: list[Any]) -> Any:
        self.calls.append(("batch", len(tensors)))
        return tensors[0]

    def stage(self, index: int, features: Any) -> Any:
        self.calls.append(("stage", index))
        if index == self.fail_at:
            raise RuntimeError("device lost")
        return features

    def read_exit(self, index: int, features: Any, rows: Any = None) -> tuple[Any, list[float], list[int]]:
        self.calls.append(("read", index))
        return None, [0.9], [self.final]


def _offer(guardrail: Guardrail, runner: Any, exit_index: int = 0, class_id: int = 1,
           reason: Reason = Reason.DEADLINE, budget: Budget | None = None) -> None:  # fmt: skip
    guardrail.offer(runner, torch.zeros(3), exit_index, class_id, reason, budget or Budget(deadline=1.0))


def _run_out(guardrail: Guardrail, runner: Any) -> list[Verdict]:
    verdicts = []
    while guardrail.pending:
        verdict = guardrail.step(runner)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


def test_the_final_exit_and_budget_stops_of_confidence_requests_are_not_sampled() -> None:
    guardrail, runner = Guardrail(1.0), StagedRunner()
    _offer(guardrail, runner, exit_index=2, reason=Reason.FINAL)  # nothing to compare with
    _offer(guardrail, runner, reason=Reason.DEADLINE, budget=Budget(deadline=1.0, min_confidence=0.9))  # a hard image
    assert not guardrail.pending
    _offer(guardrail, runner, reason=Reason.CONFIDENT, budget=Budget(min_confidence=0.95))
    _offer(guardrail, runner, reason=Reason.COMPUTE, budget=Budget(max_mflops=10))
    assert [(v.exit_index, v.expected) for v in _run_out(guardrail, runner)] == [(0, 0.9), (0, 0.7)]


def test_a_share_of_early_answers_is_drawn() -> None:
    guardrail, runner = Guardrail(0.1, pool_size=10_000, seed=1), StagedRunner()
    for _ in range(5000):
        _offer(guardrail, runner)
    assert 400 < len(guardrail._pool) < 600


def test_the_pool_is_bounded_and_drops_its_oldest() -> None:
    guardrail, runner = Guardrail(1.0, pool_size=4), StagedRunner(final=3)
    for class_id in range(6):
        _offer(guardrail, runner, class_id=class_id)
    assert guardrail.dropped == 2
    assert [v.agree for v in _run_out(guardrail, runner)] == [False, True, False, False]  # classes 2..5; final is 3


def test_each_step_runs_one_stage_and_the_last_reads_the_final_exit() -> None:
    guardrail, runner = Guardrail(1.0), StagedRunner(num_exits=3, final=1)
    _offer(guardrail, runner, exit_index=1, class_id=1)
    assert guardrail.step(runner) is None and runner.calls == [("batch", 1), ("stage", 0)]
    assert guardrail.step(runner) is None and runner.calls[-1] == ("stage", 1)
    verdict = guardrail.step(runner)
    assert runner.calls[-2:] == [("stage", 2), ("read", 2)]
    assert verdict == Verdict(exit_index=1, agree=True, expected=0.8)
    assert not guardrail.pending


def test_samples_of_a_replaced_model_and_failed_reruns_are_dropped() -> None:
    guardrail, old, new = Guardrail(1.0), StagedRunner(), StagedRunner()
    _offer(guardrail, old)
    guardrail.step(old)  # under way when the model is swapped
    _offer(guardrail, old)
    assert guardrail.step(new) is None and not guardrail.pending and new.calls == []
    new.fail_at = 1
    _offer(guardrail, new)
    assert _run_out(guardrail, new) == []  # logged and dropped; the inference thread goes on


@pytest.mark.parametrize(
    ("exit_index", "target", "expected"),
    [
        (0, None, 0.7),  # a budget stopped it: all images
        (0, 0.6, 0.9),  # the highest threshold not above its target
        (0, 0.95, 0.9),  # the 0.9 row rests on too few images: the next one down
        (0, 0.3, 0.7),  # below every threshold: all images
        (1, 0.99, 0.99),
    ],
)
def test_the_baseline_matches_how_the_sample_was_drawn(exit_index: int, target: float | None, expected: float) -> None:
    assert expected_agreement(TABLE, exit_index, target) == expected


def test_no_baseline_without_the_field_and_no_guardrail_at_share_zero() -> None:
    guardrail, runner = Guardrail(1.0), StagedRunner(meta={})
    _offer(guardrail, runner)
    assert _run_out(guardrail, runner)[0].expected is None
    assert make_guardrail(0.0) is None and Settings().guardrail_share == 0.01
    assert Settings.from_env({"ELASTIC_GUARDRAIL_SHARE": "1"}).to_env()["ELASTIC_GUARDRAIL_SHARE"] == "1.0"


# -- in the engine (the real runner on the tiny model) ---------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    ckpt = tiny_checkpoint()
    ckpt.meta["agreement"] = {"thresholds": [0.5], "exits": [{"all": 0.6, "confident": [None]}] * 3}
    return ckpt


class Recorded:
    def __init__(self) -> None:
        self.agreements: list[tuple] = []

    def __getattr__(self, hook: str) -> Any:
        return (lambda *args: self.agreements.append(args)) if hook == "agreement" else (lambda *args: None)


def test_early_answers_are_rerun_while_idle_and_counted(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint, idle_refresh_s=None)
    engine.guardrail, engine.observer = Guardrail(1.0), Recorded()
    exit0 = runner.direct_mflops[0]

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        jobs = [Job(torch.rand(3, 32, 32), Budget(max_mflops=exit0), engine.clock(), loop.create_future())
                for _ in range(5)]  # fmt: skip
        jobs.append(Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()))  # the final exit
        for job in jobs:
            engine.submit(job)
        engine.start(calibrate_first=False)
        answers = await asyncio.gather(*(job.future for job in jobs))
        for _ in range(200):  # re-run while idle, after it
            if len(engine.observer.agreements) >= 5:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(engine.stop, 5.0)
        return answers

    answers = asyncio.run(main())
    assert [a.exit_index for a in answers] == [0] * 5 + [runner.num_exits - 1]
    assert len(engine.observer.agreements) == 5  # the final-exit answer is not re-run
    assert {(exit_index, expected) for exit_index, _, expected in engine.observer.agreements} == {(0, 0.6)}


def test_a_rerun_yields_to_a_request_after_one_stage_and_resumes_later(checkpoint: Checkpoint) -> None:
    engine, _, runner = make_engine(checkpoint)
    engine.guardrail, engine.observer = Guardrail(1.0), Recorded()
    engine.guardrail.offer(runner, torch.rand(3, 32, 32), 0, 3, Reason.DEADLINE, Budget(deadline=1.0))
    stages: list[int] = []
    original = runner.stage

    def stage(index: int, features: Any) -> Any:
        stages.append(index)
        if index == 0:  # a request arrives during the re-run's first stage
            loop = asyncio.new_event_loop()
            engine.submit(Job(torch.rand(3, 32, 32), Budget(), engine.clock(), loop.create_future()))
            loop.close()
        return original(index, features)

    runner.stage = stage  # type: ignore[method-assign]
    engine._idle_work(rerun=True)
    assert stages == [0] and engine.guardrail.pending  # it waited for one stage, no more
    engine._heap.clear()  # (the request ran)
    engine._idle_work(rerun=True)
    assert stages == [0, 1, 2]  # resumed at its next stage, not from the start
    assert len(engine.observer.agreements) == 1 and not engine.guardrail.pending


def test_the_idle_wait_is_the_guardrails_while_reruns_are_due(checkpoint: Checkpoint) -> None:
    engine, _, _ = make_engine(checkpoint, idle_refresh_s=0.25)
    engine.guardrail = Guardrail(1.0)
    assert idle_wait_s(engine.config.idle_refresh_s, engine.guardrail, rerun=True) == engine.guardrail.idle_s
    assert idle_wait_s(engine.config.idle_refresh_s, engine.guardrail, rerun=False) == 0.25


def test_the_server_counts_agreement_relayed_from_the_inference_process() -> None:
    metrics = Metrics(3, CollectorRegistry())
    metrics.set_expected_agreement(TABLE)
    engine = EngineProcess({}, LatencyProfile(3, [1]), EngineConfig(), metrics)
    engine._replay([("metric", "agreement", (0, True, 0.7)), ("metric", "agreement", (0, False, 0.9)),
                    ("metric", "agreement", (1, True, None))])  # fmt: skip
    value = metrics.registry.get_sample_value
    assert value("elastic_exit_agreement_total", {"exit": "0", "agree": "true"}) == 1
    assert value("elastic_exit_agreement_total", {"exit": "0", "agree": "false"}) == 1
    assert value("elastic_exit_agreement_expected_total", {"exit": "0"}) == pytest.approx(1.6)
    assert value("elastic_exit_agreement_expected_total", {"exit": "1"}) == 0  # no baseline: nothing expected
    assert value("elastic_exit_expected_agreement", {"exit": "0"}) == 0.7
    assert value("elastic_exit_expected_agreement", {"exit": "2"}) is None  # the final exit: nothing to re-run
    metrics.set_expected_agreement(None)  # reloaded to a checkpoint without a baseline
    assert value("elastic_exit_expected_agreement", {"exit": "0"}) is None
