"""Metrics counted from answers: overrun answers are counted apart, with their exit."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from service.engine import Answer
from service.metrics import Metrics
from service.policy import Budget, Reason


def _answer(exit_index: int, reason: Reason, met: bool) -> Answer:
    return Answer(
        class_id=1, confidence=0.5, exit_index=exit_index, mflops=10.0, latency_s=0.004, queue_s=0.0,
        budget_met=met, reason=reason, slack_s=0.001 if met else -0.001,
    )  # fmt: skip


def test_overrun_answers_are_counted_by_exit_besides_the_outcome() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(num_exits=3, registry=registry)
    budget = Budget(deadline=1.0)
    metrics.answered(_answer(1, Reason.OVERRUN, met=True), budget)
    metrics.answered(_answer(1, Reason.OVERRUN, met=False), budget)
    metrics.answered(_answer(2, Reason.DEADLINE, met=True), budget)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("elastic_overrun_answers_total", exit="1") == 2
    assert value("elastic_overrun_answers_total", exit="2") is None
    assert value("elastic_requests_total", exit="1", outcome="met") == 1
    assert value("elastic_requests_total", exit="1", outcome="missed") == 1
