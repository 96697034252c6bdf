"""The budget policy with plain numbers: a fake clock (`now`) and a fake profile (per-stage seconds)."""

import math

import pytest

from elastic_anytime.service.engine.policy import (
    Budget,
    Reason,
    affordable_wait,
    decide,
    first_exit_fits,
    needs_exit,
    queue_allows,
)

NUM_EXITS = 5
STAGE_S = 0.010  # the fake profile: every stage + head takes 10 ms
MFLOPS = [40.0, 80.0, 120.0, 160.0, 200.0]


def run_policy(budget: Budget, start: float = 0.0, confidences: list[float] | None = None, margin: float = 0.0) -> int:
    """Walk a request through the exits with a fake clock that advances 10 ms per stage; return its exit."""
    confidences = confidences or [0.5] * NUM_EXITS
    now = start
    for k in range(NUM_EXITS):
        now += STAGE_S
        next_mflops = MFLOPS[k + 1] if k + 1 < NUM_EXITS else math.inf
        if decide(k, NUM_EXITS, confidences[k], budget, now, STAGE_S, next_mflops, margin) is not Reason.CONTINUE:
            return k
    raise AssertionError("the policy never stopped")


def test_no_budget_reaches_the_final_exit() -> None:
    assert run_policy(Budget()) == NUM_EXITS - 1
    assert decide(NUM_EXITS - 1, NUM_EXITS, 0.1, Budget(), 0.0, 0.0, math.inf, 0.0) is Reason.FINAL


@pytest.mark.parametrize(
    ("deadline", "expected_exit"),
    [(0.050, 4), (0.049, 3), (0.040, 3), (0.035, 2), (0.020, 1), (0.019, 0), (0.005, 0), (-1.0, 0)],
)
def test_deadline_picks_the_deepest_exit_that_fits(deadline: float, expected_exit: int) -> None:
    # exit k answers at (k + 1) * 10 ms; going on from k needs now + 10 ms <= deadline
    assert run_policy(Budget(deadline=deadline)) == expected_exit


def test_margin_is_kept_free() -> None:
    assert run_policy(Budget(deadline=0.030), margin=0.0) == 2
    assert run_policy(Budget(deadline=0.030), margin=0.001) == 1


def test_deadline_is_relative_to_the_receive_time() -> None:
    assert run_policy(Budget(deadline=100.035), start=100.0) == 2


def test_deadline_edge_is_inclusive() -> None:
    assert decide(0, NUM_EXITS, 0.1, Budget(deadline=0.03), now=0.02, predicted_next_s=0.01, next_mflops=1,
                  margin_s=0.0) is Reason.CONTINUE  # fmt: skip
    assert decide(0, NUM_EXITS, 0.1, Budget(deadline=0.03), now=0.0200001, predicted_next_s=0.01, next_mflops=1,
                  margin_s=0.0) is Reason.DEADLINE  # fmt: skip


@pytest.mark.parametrize(("max_mflops", "expected_exit"), [(200.0, 4), (199.9, 3), (120.0, 2), (80.0, 1), (10.0, 0)])
def test_compute_budget_caps_the_exit(max_mflops: float, expected_exit: int) -> None:
    assert run_policy(Budget(max_mflops=max_mflops)) == expected_exit


def test_confidence_stops_early() -> None:
    confidences = [0.3, 0.6, 0.95, 0.99, 0.99]
    assert run_policy(Budget(min_confidence=0.9), confidences=confidences) == 2
    assert run_policy(Budget(min_confidence=0.2), confidences=confidences) == 0
    assert decide(1, NUM_EXITS, 0.95, Budget(min_confidence=0.9), 0.0, 0.0, 1.0, 0.0) is Reason.CONFIDENT


def test_tightest_constraint_wins() -> None:
    budget = Budget(deadline=0.050, max_mflops=120.0, min_confidence=0.99)
    assert run_policy(budget, confidences=[0.5] * NUM_EXITS) == 2
    assert run_policy(Budget(deadline=0.020, max_mflops=1e9)) == 1


def test_exit_zero_always_answers() -> None:
    # a deadline that already passed still gets an answer: from exit 0, flagged as late by the caller
    assert run_policy(Budget(deadline=-5.0)) == 0
    assert not first_exit_fits(Budget(deadline=0.005), now=0.0, predicted_first_s=0.010, margin_s=0.0)
    assert first_exit_fits(Budget(deadline=0.010), now=0.0, predicted_first_s=0.010, margin_s=0.0)
    assert first_exit_fits(Budget(), now=1e9, predicted_first_s=1.0, margin_s=1.0)


def test_urgency_orders_deadlines_before_no_deadline() -> None:
    assert Budget(deadline=3.0).urgency < Budget(deadline=4.0).urgency < Budget().urgency == math.inf


def test_affordable_wait_keeps_the_reachable_exit() -> None:
    stages, heads = [0.010] * NUM_EXITS, [0.0] * NUM_EXITS
    assert affordable_wait(Budget(), 0.0, stages, heads, 0.0) == math.inf
    # 35 ms reaches exit 2 (30 ms): 5 ms to spare
    assert affordable_wait(Budget(deadline=0.035), 0.0, stages, heads, 0.0) == pytest.approx(0.005)
    assert affordable_wait(Budget(deadline=0.035), 0.0, stages, heads, 0.002) == pytest.approx(0.003)
    # the whole network fits with 10 ms left over
    assert affordable_wait(Budget(deadline=0.060), 0.0, stages, heads, 0.0) == pytest.approx(0.010)
    # not even exit 0 fits: start at once
    assert affordable_wait(Budget(deadline=0.005), 0.0, stages, heads, 0.0) == 0.0
    assert affordable_wait(Budget(deadline=-1.0), 0.0, stages, heads, 0.0) == 0.0


def test_affordable_wait_counts_only_the_answering_head() -> None:
    # stages 8 ms, heads 2 ms: exit k answers after (k + 1) * 8 + 2 ms, earlier heads are not read
    stages, heads = [0.008] * NUM_EXITS, [0.002] * NUM_EXITS
    assert affordable_wait(Budget(deadline=0.030), 0.0, stages, heads, 0.0) == pytest.approx(0.004)  # exit 2: 26 ms
    assert affordable_wait(Budget(deadline=0.009), 0.0, stages, heads, 0.0) == 0.0  # exit 0 needs 10 ms
    # an expensive early head does not make a later exit unreachable
    assert affordable_wait(Budget(deadline=0.030), 0.0, stages, [0.020, 0.002, 0.002, 0, 0], 0.0) == pytest.approx(
        0.004
    )


def test_before_the_head_everything_but_confidence_is_decided() -> None:
    budget = Budget(deadline=0.050, max_mflops=120.0, min_confidence=0.9)
    # confidence unknown: no confident stop yet, the other limits apply as usual
    assert decide(0, NUM_EXITS, None, budget, 0.010, 0.010, 80.0, 0.0) is Reason.CONTINUE
    assert decide(2, NUM_EXITS, None, budget, 0.030, 0.010, 160.0, 0.0) is Reason.COMPUTE
    assert decide(3, NUM_EXITS, None, budget, 0.045, 0.010, 100.0, 0.0) is Reason.DEADLINE
    assert decide(NUM_EXITS - 1, NUM_EXITS, None, budget, 0.0, 0.0, math.inf, 0.0) is Reason.FINAL


def test_the_head_is_read_for_requests_that_may_stop() -> None:
    assert not needs_exit(Reason.CONTINUE, Budget(deadline=1.0, max_mflops=100.0))
    assert needs_exit(Reason.CONTINUE, Budget(min_confidence=0.5))  # its confidence may stop it here
    for reason in (Reason.FINAL, Reason.COMPUTE, Reason.DEADLINE):
        assert needs_exit(reason, Budget())


def test_going_deeper_never_costs_a_waiting_request_its_first_exit() -> None:
    # the waiting request's batch needs 10 ms for its first exit; the running batch's next step 10 ms
    assert queue_allows(0.0, 0.010, None, 0.010, 0.0)  # nobody waiting with a deadline
    assert queue_allows(0.0, 0.010, 0.020, 0.010, 0.0)  # step, then its first exit: 20 ms, just in time
    assert not queue_allows(0.0, 0.010, 0.019, 0.010, 0.0)  # it would fit now, not after the step
    assert not queue_allows(0.0, 0.010, 0.020, 0.010, 0.001)  # the margin counts
    assert queue_allows(0.0, 0.010, 0.005, 0.010, 0.0)  # it cannot fit even now: stopping would not save it
