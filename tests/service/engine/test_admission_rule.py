"""Admission as a pure rule: 422 below what an idle server typically meets, 503 only when work ahead
makes the first exit late (and the detail names that work), otherwise taken."""

from __future__ import annotations

import dataclasses

import pytest

from elastic_anytime.service.engine.admission import (
    Ahead,
    BacklogError,
    DeadlineUnmeetableError,
    FrontEnd,
    check,
    idle_floor_s,
    way_out_s,
)
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile

NOW = 100.0


@pytest.fixture
def profile() -> LatencyProfile:
    # exit 0: warm 1 ms at batch 1 and 4 ms at batch 8; cold 2 ms typically, its tail 6 ms
    profile = LatencyProfile(2, [1, 2, 4, 8], window=100)
    for i in range(100):
        profile.observe(0, 1, 0.001, 0.0)
        profile.observe(0, 8, 0.004, 0.0)
        profile.observe(0, 1, 0.006 if i % 10 == 0 else 0.002, 0.0, True)
    return profile


FRONT = FrontEnd(
    lone_intake_s=0.0003, decode_s=0.0002, lone_decode_s=0.0002, read_s=0.0004, lone_out_s=0.0003, out_s=0.002
)
NOTHING_AHEAD = Ahead()


def admit(profile: LatencyProfile, budget_s: float, ahead: Ahead = NOTHING_AHEAD, waited_s: float = 0.0) -> None:
    check(profile, "p99", 8, Budget(deadline=NOW - waited_s + budget_s), NOW - waited_s, NOW, ahead, FRONT)


def test_no_deadline_is_never_refused(profile: LatencyProfile) -> None:
    check(profile, "p99", 8, Budget(), NOW, NOW, Ahead(queued=10_000), FRONT)


def test_the_idle_floor_is_decoding_a_typical_cold_exit_0_and_the_hand_over(profile: LatencyProfile) -> None:
    # reading the request is left out: a loaded loop or a slow client shows there first, not the budget
    assert idle_floor_s(profile, FRONT) == pytest.approx(0.0025)
    with pytest.raises(DeadlineUnmeetableError, match=r"typically needs 2\.50 ms") as refused:
        admit(profile, 0.0024)
    assert type(refused.value) is DeadlineUnmeetableError  # 422, not overload
    admit(profile, 0.0026)  # above the floor, below the cold tail (6 ms): an idle server takes it


def test_an_idle_server_takes_a_request_whose_own_intake_was_slow(profile: LatencyProfile) -> None:
    admit(profile, 0.004, waited_s=0.003)  # 1 ms left, nothing ahead: served (a 503 would be false)


@pytest.mark.parametrize(
    ("ahead", "named"),
    [
        (Ahead(queued=8), r"8 requests are queued ahead of it, whose first exits take 4\.0 ms"),
        (Ahead(queued=3), r"3 requests are queued ahead of it, in the batch it would join"),
        (Ahead(running_s=0.003), r"the stage running now needs 3\.0 ms more"),
        (Ahead(others_in_front=3), r"the front end is reading 3 other requests: this one waited 1\.7 ms longer"),
        (Ahead(others_in_engine=2), r"2 other requests in the engine keep the front end busy"),
    ],
)
def test_overload_names_the_work_ahead(profile: LatencyProfile, ahead: Ahead, named: str) -> None:
    with pytest.raises(BacklogError, match=named):
        admit(profile, 0.004, ahead, waited_s=0.002)


def test_work_ahead_that_leaves_room_refuses_nobody(profile: LatencyProfile) -> None:
    admit(profile, 0.010, Ahead(queued=8, running_s=0.002))  # 2 + 4 + 1 (its own, warm) + 2 (out) ms
    with pytest.raises(BacklogError):
        admit(profile, 0.0085, Ahead(queued=8, running_s=0.002))


def test_an_idle_engine_predicts_the_first_exit_cold(profile: LatencyProfile) -> None:
    # another request is being read, so the rule is checked; the engine is idle, so exit 0 runs cold (6 ms tail)
    admit(profile, 0.0075, Ahead(others_in_front=1, idle=False))
    with pytest.raises(BacklogError, match=r"its own first exit need 6\.2 ms, and the answer 2\.0 ms"):
        admit(profile, 0.0075, Ahead(others_in_front=1, idle=True))


def test_an_answer_waits_for_the_requests_still_to_be_read() -> None:
    # a burst read in one go: one request is read at a time, and the answers that came meanwhile go out
    # between two, so an answer waits for at most the reads of two others
    quiet = dataclasses.replace(FRONT, out_s=0.0)
    assert way_out_s(quiet, 0, alone=True) == pytest.approx(0.0003)
    assert way_out_s(quiet, 1) == pytest.approx(0.0003 + 0.0004)
    assert way_out_s(quiet, 10) == pytest.approx(0.0003 + 2 * 0.0004)
    # others on the server: never below the recent figure under load; alone: a lone answer's way out
    assert way_out_s(FRONT, 1) == pytest.approx(0.002)
    assert way_out_s(FRONT, 0, alone=True) == pytest.approx(0.0003)


def test_a_queue_of_batches_is_predicted_at_its_tail_once_not_once_per_batch() -> None:
    # exit 0 at batch 8: 4 ms typically, 10 ms in one pass of ten
    noisy = LatencyProfile(2, [1, 2, 4, 8], window=100)
    for i in range(100):
        noisy.observe(0, 1, 0.001, 0.0)
        noisy.observe(0, 8, 0.010 if i % 10 == 0 else 0.004, 0.0)
    one_batch = Ahead(queued=8)  # one full batch ahead: at its tail (10 ms), then its own 1 ms and 2 ms out
    check(noisy, "p99", 8, Budget(deadline=NOW + 0.0135), NOW, NOW, one_batch, FRONT)
    with pytest.raises(BacklogError, match=r"whose first exits take 10\.0 ms"):
        check(noisy, "p99", 8, Budget(deadline=NOW + 0.0125), NOW, NOW, one_batch, FRONT)
    # four batches: 4 × 4 ms, and the tail's 6 ms excess grows as the square root of their number: 28 ms, not 40
    four_batches = Ahead(queued=32)
    check(noisy, "p99", 8, Budget(deadline=NOW + 0.0315), NOW, NOW, four_batches, FRONT)
    with pytest.raises(BacklogError, match=r"32 requests are queued ahead of it, whose first exits take 28\.0 ms"):
        check(noisy, "p99", 8, Budget(deadline=NOW + 0.030), NOW, NOW, four_batches, FRONT)


def test_the_tail_of_a_burst_that_can_no_longer_make_a_typical_first_exit_is_refused(profile: LatencyProfile) -> None:
    # nothing ahead any more: the requests read before it are answered or refused. Alone from its first byte,
    # it would be served whatever its intake took; after others were read first, it is refused once even a
    # typical first exit (exit 0 warm 1 ms, decoding 0.2, the way out 0.3) can no longer answer in time
    crowded = Ahead(crowded=True)
    admit(profile, 0.010, crowded, waited_s=0.0084)  # 1.6 ms left: 1.5 needed
    named = r"other requests that came with it or before it were handled first: it has been 8\.6 ms"
    with pytest.raises(BacklogError, match=named):
        admit(profile, 0.010, crowded, waited_s=0.0086)
    admit(profile, 0.010, NOTHING_AHEAD, waited_s=0.0095)  # alone: its slow intake is not the server's doing


def test_the_front_ends_costs_cross_the_wire_field_by_field() -> None:
    costs = FrontEnd(*(0.001 * (i + 1) for i in range(len(dataclasses.fields(FrontEnd)))))
    assert costs.as_tuple() == dataclasses.astuple(costs)
    assert FrontEnd(*costs.as_tuple()) == costs
