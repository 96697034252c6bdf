"""Prometheus metrics, declared once here. Base units (seconds), bounded labels (exit index, stage
index, outcome; never request ids or raw budgets), buckets from 0.1 ms to 10 s for millisecond budgets.

One `Metrics` per app, on its own registry, so several apps can live in one process (tests). With
several uvicorn workers set PROMETHEUS_MULTIPROC_DIR before start-up (`elastic serve --workers N`
does it): values then go to files in that directory and `/metrics` aggregates all workers.
Every update is wrapped so that a metric can never fail a request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Answer

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01,
    0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_SLACK_POSITIVE = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0)
SLACK_BUCKETS = (*(-v for v in reversed(_SLACK_POSITIVE)), 0.0, *_SLACK_POSITIVE)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024)
OUTCOMES = ("met", "missed", "rejected", "error")
# the error codes of refusals (service.http.routes): a bounded label set
REFUSAL_REASONS = ("budget_too_small", "overloaded", "queue_full", "unavailable")
NO_EXIT = "none"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    def __init__(self, num_exits: int, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._model_labels: tuple[str, ...] | None = None  # elastic_model_info's current series (set_model)
        r = self.registry
        if not multiprocess_dir():  # process_*, python_* as on the default registry (per-pid files can't hold them)
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.exit_latency = Histogram(
            "elastic_exit_latency_seconds",
            "Server-side latency (receive to answer) of requests answered at each exit",
            ["exit"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_latency = Histogram(
            "elastic_stage_latency_seconds",
            "Compute time of one stage plus its exit head, per batch",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "elastic_requests", "Classification requests by exit and outcome (met, missed, rejected, error)",
            ["exit", "outcome"], registry=r,
        )  # fmt: skip
        self.queue_wait_hist = Histogram(
            "elastic_queue_wait_seconds", "Time a request waited in the engine queue before its batch started",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "elastic_batch_size", "Requests per batch when it starts", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_front_ends = Histogram(
            "elastic_batch_front_ends",
            "HTTP front ends whose requests share a batch (elastic serve --workers N: one engine batches for all)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.slack = Histogram(
            "elastic_budget_slack_seconds", "Time budget minus server-side latency (negative: missed)",
            buckets=SLACK_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "elastic_requests_in_flight", "Classification requests being handled now",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.queue_depth = Gauge(
            "elastic_queue_depth", "Requests waiting in the engine queue", registry=r, multiprocess_mode="livesum"
        )
        self.model_info = Gauge(
            "elastic_model_info", "The served model (value 1)",
            ["model", "checkpoint", "device", "num_exits"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.engine_restarts = Counter(
            "elastic_engine_restarts",
            "Inference processes started to replace one that exited (ELASTIC_ENGINE=process)", registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "elastic_refusals", "Classification requests refused without an answer, by reason (the error code)",
            ["reason"], registry=r,
        )  # fmt: skip
        self.cancelled = Counter(
            "elastic_cancelled", "Requests whose client disconnected before the answer (their work stopped)",
            registry=r,
        )  # fmt: skip
        self.exit_agreement = Counter(
            "elastic_exit_agreement",
            "Early answers re-run to the final exit by the guardrail, by exit and whether the final exit agreed",
            ["exit", "agree"], registry=r,
        )  # fmt: skip
        self.exit_agreement_expected = Counter(
            "elastic_exit_agreement_expected",
            "Sum over the re-run early answers of the calibrated agreement for an answer drawn that way "
            "(elastic.json 'agreement'); divided by the re-runs, the agreement to expect",
            ["exit"], registry=r,
        )  # fmt: skip
        self.expected_agreement = Gauge(
            "elastic_exit_expected_agreement",
            "Calibrated agreement of each early exit with the final exit over all images (budget-stopped answers), "
            "from the served checkpoint's elastic.json; absent when it has none",
            ["exit"], registry=r, multiprocess_mode="max",
        )  # fmt: skip
        # create every series up front so dashboards see zeros rather than gaps
        for k in range(num_exits - 1):  # only early answers are re-run
            for agree in ("true", "false"):
                self.exit_agreement.labels(exit=str(k), agree=agree)
            self.exit_agreement_expected.labels(exit=str(k))
        for k in range(num_exits):
            self.exit_latency.labels(exit=str(k))
            self.stage_latency.labels(stage=str(k))
            for outcome in ("met", "missed"):
                self.requests.labels(exit=str(k), outcome=outcome)
        for outcome in ("rejected", "error"):
            self.requests.labels(exit=NO_EXIT, outcome=outcome)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason=reason)

    # -- engine observer hooks (called from the inference thread) -------------------------------

    def stage(self, index: int, batch_size: int, seconds: float) -> None:
        self.stage_latency.labels(stage=str(index)).observe(seconds)

    def batch(self, size: int, sources: int = 1) -> None:
        self.batch_size.observe(size)
        self.batch_front_ends.observe(sources)

    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_hist.observe(max(0.0, seconds))

    def queued(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def answered(self, answer: Answer, budget: Budget) -> None:
        exit_label = str(answer.exit_index)
        self.exit_latency.labels(exit=exit_label).observe(answer.latency_s)
        self.requests.labels(exit=exit_label, outcome="met" if answer.budget_met else "missed").inc()
        if answer.slack_s is not None:
            self.slack.observe(answer.slack_s)

    def agreement(self, exit_index: int, agree: bool, expected: float | None) -> None:
        """The guardrail re-ran an early answer to the final exit (service.engine.guardrail)."""
        exit_label = str(exit_index)
        self.exit_agreement.labels(exit=exit_label, agree="true" if agree else "false").inc()
        if expected is not None:
            self.exit_agreement_expected.labels(exit=exit_label).inc(expected)

    def set_expected_agreement(self, table: dict | None) -> None:
        """The served checkpoint's calibrated agreement per early exit (its elastic.json 'agreement', over all
        images); no series without one. At start-up and after a hot reload."""

        def update() -> None:
            self.expected_agreement.clear()
            for k, entry in enumerate((table or {"exits": []})["exits"][:-1]):
                self.expected_agreement.labels(exit=str(k)).set(entry["all"])

        self.safely(update)

    def engine_restarted(self) -> None:
        """The process engine started a new inference process after its child exited (event loop)."""
        self.safely(self.engine_restarts.inc)

    # -- route-side helpers ----------------------------------------------------------------------

    def outcome(self, outcome: str) -> None:
        """Count a request that got no classification: 'rejected' (admission) or 'error' (bad input, failure)."""
        self.safely(lambda: self.requests.labels(exit=NO_EXIT, outcome=outcome).inc())

    def refused(self, reason: str) -> None:
        """Count a refusal by its error code (one of REFUSAL_REASONS; anything else is counted as 'other')."""
        label = reason if reason in REFUSAL_REASONS else "other"
        self.safely(lambda: self.refusals.labels(reason=label).inc())

    def client_gone(self) -> None:
        self.safely(self.cancelled.inc)

    @contextmanager
    def tracking(self) -> Iterator[None]:
        """In-flight gauge around one request."""
        self.safely(self.in_flight.inc)
        try:
            yield
        finally:
            self.safely(self.in_flight.dec)

    def set_model(self, model: str, checkpoint: str, device: str, num_exits: int) -> None:
        """One elastic_model_info series per process: the model it serves (or describes) now."""
        labels = (model, checkpoint, device, str(num_exits))

        def update() -> None:
            previous, self._model_labels = self._model_labels, labels
            if previous is not None and previous != labels:
                if multiprocess_dir():  # files cannot forget a series: the old one reads 0
                    self.model_info.labels(*previous).set(0)
                else:
                    self.model_info.remove(*previous)
            self.model_info.labels(*labels).set(1)

        self.safely(update)

    @staticmethod
    def safely(update: object) -> None:
        try:
            update()  # type: ignore[operator]
        except Exception:
            log.warning("metric update failed", exc_info=True)

    def render(self) -> tuple[bytes, str]:
        """Exposition text; across all workers' files in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
