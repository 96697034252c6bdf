"""The hand-off estimate: a quantile of the last second's hand-offs, zero without any, and a burst
that has passed stops counting even when no new hand-off comes to replace it."""

from __future__ import annotations

import pytest

from elastic_anytime.service.engine.handoff_estimate import HORIZON_S, WINDOW, HandoffEstimate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_zero_without_hand_offs() -> None:
    assert HandoffEstimate(0.5, Clock()).seconds == 0.0


def test_the_quantile_of_recent_hand_offs() -> None:
    clock = Clock()
    median, tail = HandoffEstimate(0.5, clock), HandoffEstimate(0.99, clock)
    for i in range(160):  # 0.1 ms .. 16 ms (a multiple of the refresh interval: the estimate is current)
        for estimate in (median, tail):
            estimate.observe((i + 1) * 1e-4)
    assert median.seconds == pytest.approx(8.1e-3)
    assert tail.seconds == pytest.approx(15.9e-3)


def test_only_the_last_window_counts() -> None:
    estimate = HandoffEstimate(0.5, Clock())
    for _ in range(WINDOW):
        estimate.observe(0.010)
    for _ in range(WINDOW):
        estimate.observe(0.001)
    assert estimate.seconds == pytest.approx(0.001)


def test_a_burst_that_has_passed_stops_counting() -> None:
    clock = Clock()
    estimate = HandoffEstimate(0.99, clock)
    for _ in range(50):
        estimate.observe(0.020)  # a stall: with this much room the engine refuses tight budgets
    assert estimate.seconds == pytest.approx(0.020)
    clock.now += HORIZON_S / 2
    estimate.observe(0.001)
    assert estimate.seconds == pytest.approx(0.020)
    clock.now += HORIZON_S / 2 + 0.01  # the stall is over a second old; nothing new came (all refused)
    assert estimate.seconds == pytest.approx(0.001)
    clock.now += HORIZON_S
    assert estimate.seconds == 0.0
