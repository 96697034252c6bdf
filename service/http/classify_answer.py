"""A classify job's answer as the client gets it, shared by /v1/classify and its stream's final event: the
latency measured at the response, the way out timed for the front end's costs, the answer counted, and
the response body."""

from __future__ import annotations

from typing import Any

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Answer
from elastic_anytime.service.http.intake import Intake, as_sent
from elastic_anytime.service.http.schemas import ClassifyResponse, TopK


def top_k_of(answer: Answer, classes: list[str]) -> list[TopK] | None:
    """The answer's k most likely classes, labelled; None when the request asked for none."""
    return answer.top_k and [TopK(label=classes[c], class_id=c, confidence=p) for c, p in answer.top_k]


def classify_response(
    intake: Intake, answer: Answer, budget: Budget, budget_ms: float | None, budget_mflops: float | None
) -> ClassifyResponse:
    """The response for the engine's `answer`, made now: timed and counted as every answer is."""
    service = intake.service
    runner: Any = answer.runner or service.runner  # the model that answered, even if a reload swapped it meanwhile
    classes = runner.classes
    top_k = top_k_of(answer, classes)
    # the answer as the client gets it: latency from the request's first byte to its response, made now
    sent = as_sent(answer, budget, intake.received, service.engine.clock())
    intake.observe_out(answer, sent.latency_s)  # the engine keeps room before deadlines for the way out
    service.metrics.safely(lambda: service.metrics.answered(sent, budget))
    return ClassifyResponse(
        label=classes[sent.class_id],
        class_id=sent.class_id,
        confidence=sent.confidence,
        exit=sent.exit_index,
        exit_name=runner.exit_names[sent.exit_index],
        num_exits=runner.num_exits,
        mflops=sent.mflops,
        latency_ms=round(sent.latency_s * 1e3, 4),
        queue_ms=round(sent.queue_s * 1e3, 4),
        budget_ms=budget_ms,
        budget_mflops=budget_mflops,
        budget_met=sent.budget_met,
        stopped_by=sent.reason.value,
        top_k=top_k,
    )
