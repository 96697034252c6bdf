"""The front end's costs: lone requests kept apart over a long horizon, answers under load over the last
second, and the first requests after start-up (one-time costs) left out."""

from __future__ import annotations

import pytest

from elastic_anytime.service.engine.front_costs import LONE_HORIZON_S, MIN_LONE_EVIDENCE, SKIP_FIRST, FrontEndCosts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def started(costs: FrontEndCosts) -> FrontEndCosts:
    """Past the first requests after start-up, which are left out."""
    for _ in range(SKIP_FIRST):
        costs.observe_intake(1.0, lone=True)
        costs.observe_decode(1.0, lone=True)
        costs.observe_out(1.0, lone=True)
        costs.observe_out(1.0, lone=False)
    return costs


def test_the_first_requests_after_start_up_are_left_out() -> None:
    costs = FrontEndCosts(0.5, Clock())
    for _ in range(SKIP_FIRST):  # the first reads after start-up pay one-time costs
        costs.observe_intake(0.009, lone=True)
    assert costs.now().lone_intake_s == 0.0
    for _ in range(MIN_LONE_EVIDENCE):
        costs.observe_intake(0.0007, lone=True)
    assert costs.now().lone_intake_s == pytest.approx(0.0007)


def test_lone_and_loaded_costs_are_kept_apart() -> None:
    costs = started(FrontEndCosts(0.5, Clock()))
    for _ in range(10):
        costs.observe_intake(0.001, lone=True)
        costs.observe_intake(0.009, lone=False)  # waited behind others: not what a lone request costs
        costs.observe_decode(0.0005)
        costs.observe_out(0.0004, lone=True)
        costs.observe_out(0.003, lone=False)
    front = costs.now()
    assert front.lone_intake_s == pytest.approx(0.001)
    assert front.decode_s == pytest.approx(0.0005)
    assert front.lone_out_s == pytest.approx(0.0004)
    assert front.out_s == pytest.approx(0.003)


def test_a_burst_is_forgotten_within_a_second_lone_costs_are_kept_longer() -> None:
    clock = Clock()
    costs = started(FrontEndCosts(0.5, clock))
    clock.now = LONE_HORIZON_S + 1.0  # the start-up samples are gone
    costs.observe_out(0.003, lone=False)
    for _ in range(MIN_LONE_EVIDENCE):
        costs.observe_intake(0.001, lone=True)
    clock.now += 2.0
    assert costs.now().out_s == 0.0
    assert costs.now().lone_intake_s == pytest.approx(0.001)  # sparse traffic brings few lone samples
    clock.now += LONE_HORIZON_S
    assert costs.now().lone_intake_s == 0.0


def test_no_room_for_answers_under_load_when_switched_off() -> None:
    costs = started(FrontEndCosts(None, Clock()))
    costs.observe_out(0.003, lone=False)
    assert costs.now().out_s == 0.0


def test_the_idle_floor_decodes_at_a_lone_requests_pace() -> None:
    costs = started(FrontEndCosts(0.5, Clock()))
    for _ in range(10):
        costs.observe_decode(0.0004, lone=True)
        costs.observe_decode(0.003)  # under load decoding is slower: admission plans with it, the floor does not
        costs.observe_decode(0.003)
    front = costs.now()
    assert front.lone_decode_s == pytest.approx(0.0004)
    assert front.decode_s == pytest.approx(0.0004)  # the lower quartile of all of them


def test_one_slow_lone_request_sets_no_floor_until_more_confirm_it() -> None:
    """After a long idle spell the first request is slow (cold caches). Were its figure the floor, every
    request after it would be refused before decoding, and none could replace the figure: lock-in."""
    clock = Clock()
    costs = started(FrontEndCosts(0.5, clock))
    clock.now = LONE_HORIZON_S + 1.0  # an hour of nothing: the start-up samples are gone
    costs.observe_decode(0.003, lone=True)
    costs.observe_out(0.001, lone=True)
    assert (costs.now().lone_decode_s, costs.now().lone_out_s) == (0.0, 0.0)  # one request is no evidence
    for _ in range(MIN_LONE_EVIDENCE - 1):  # the requests it let through are faster
        costs.observe_decode(0.0004, lone=True)
        costs.observe_out(0.0002, lone=True)
    assert costs.now().lone_decode_s == pytest.approx(0.0004) and costs.now().lone_out_s == pytest.approx(0.0002)
