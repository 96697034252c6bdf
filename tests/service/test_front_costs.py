"""The front end's costs: lone requests kept apart over a long horizon, answers under load over the last second."""

from __future__ import annotations

import pytest

from service.front_costs import LONE_HORIZON_S, FrontEndCosts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lone_and_loaded_costs_are_kept_apart() -> None:
    costs = FrontEndCosts(0.5, Clock())
    for _ in range(10):
        costs.observe_intake(0.001, lone=True)
        costs.observe_intake(0.009, lone=False)  # waited behind others: not what a lone request costs
        costs.observe_out(0.0004, lone=True)
        costs.observe_out(0.003, lone=False)
    front = costs.now()
    assert front.lone_intake_s == pytest.approx(0.001)
    assert front.lone_out_s == pytest.approx(0.0004)
    assert front.out_s == pytest.approx(0.003)


def test_a_burst_is_forgotten_within_a_second_lone_costs_are_kept_longer() -> None:
    clock = Clock()
    costs = FrontEndCosts(0.5, clock)
    costs.observe_out(0.003, lone=False)
    costs.observe_intake(0.001, lone=True)
    clock.now = 2.0
    assert costs.now().out_s == 0.0
    assert costs.now().lone_intake_s == pytest.approx(0.001)  # sparse traffic brings few lone samples
    clock.now = LONE_HORIZON_S + 1.0
    assert costs.now().lone_intake_s == 0.0


def test_no_room_for_answers_under_load_when_switched_off() -> None:
    costs = FrontEndCosts(None, Clock())
    costs.observe_out(0.003, lone=False)
    assert costs.now().out_s == 0.0
