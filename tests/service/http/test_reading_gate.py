"""ReadingGate: the turn to be read goes oldest first while that works; once reads were refused as too late,
to the oldest waiter that has not waited longer than admitted reads did (the newest when all have), and every
other turn to a request passed over for PATIENCE_S."""

from __future__ import annotations

import asyncio

from elastic_anytime.service.http.reading_gate import MIN_ADMITTED, PATIENCE_S, STALE_FLOOR_S, ReadingGate

NOW = 10.0


def _taught(admitted_waits: list[float], refused_waits: list[float]) -> ReadingGate:
    gate = ReadingGate(clock=lambda: NOW)
    for waited in admitted_waits:
        gate.record(waited, admitted=True)
    for waited in refused_waits:
        gate.record(waited, admitted=False)
    return gate


def _order_of_turns(gate: ReadingGate, arrivals: list[float]) -> list[float]:
    """Hold the gate, queue one request per arrival time (seconds on a clock that reads NOW), then release it
    and let each waiter pass the turn on: the arrival times in the order they were read."""
    read: list[float] = []

    async def request(since: float) -> None:
        await gate.acquire(since)
        read.append(since)
        gate.release()

    async def run() -> None:
        await gate.acquire(NOW)
        tasks = [asyncio.create_task(request(since)) for since in arrivals]
        await asyncio.sleep(0)  # every request is waiting
        assert gate.waiting == len(arrivals)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert not gate.locked()

    asyncio.run(run())
    return read


def test_while_nothing_is_refused_requests_are_read_in_arrival_order() -> None:
    gate = _taught([0.001, 0.030, 0.080], [])
    arrivals = [NOW - 0.090, NOW - 0.050, NOW - 0.001]  # a burst long in the reading: still arrival order
    assert gate.stale_after() == float("inf")
    assert _order_of_turns(gate, arrivals) == arrivals


def test_after_refusals_the_oldest_request_that_can_still_make_it_goes_first() -> None:
    gate = _taught([0.008] * MIN_ADMITTED, [0.030] * 4)  # admitted after 8 ms, refused after 30
    assert gate.stale_after() == 0.008
    stale, fresh_old, fresh_new = NOW - 0.020, NOW - 0.006, NOW - 0.001
    # the fresh ones in arrival order, then the stale one (the clock stands still: it never becomes fresh)
    assert _order_of_turns(gate, [fresh_new, stale, fresh_old]) == [fresh_old, fresh_new, stale]


def test_refusals_with_too_few_admitted_reads_to_learn_from_call_anything_past_the_floor_stale() -> None:
    gate = _taught([0.050], [0.030] * 4)
    assert gate.stale_after() == STALE_FLOOR_S
    arrivals = [NOW - 3 * STALE_FLOOR_S, NOW - 2 * STALE_FLOOR_S]  # both stale: the newest first
    assert _order_of_turns(gate, arrivals) == sorted(arrivals, reverse=True)


def test_when_every_request_is_overdue_fresh_ones_still_get_every_other_turn() -> None:
    # more clients than the front end reads in PATIENCE_S: oldest first alone would be arrival order again
    gate = _taught([0.002] * MIN_ADMITTED, [0.2] * MIN_ADMITTED)
    overdue = [NOW - PATIENCE_S - 0.004, NOW - PATIENCE_S - 0.003, NOW - PATIENCE_S - 0.002]
    fresh = [NOW - 0.0002, NOW - 0.0001, NOW]
    assert _order_of_turns(gate, overdue + fresh) == [overdue[0], fresh[0], overdue[1], fresh[1], overdue[2], fresh[2]]


def test_what_the_gate_learned_ages_out() -> None:
    now = [NOW]
    gate = ReadingGate(clock=lambda: now[0])
    gate.record(0.030, admitted=False)
    assert gate.stale_after() == STALE_FLOOR_S
    now[0] += 2.0  # a second without reads: arrival order again
    assert gate.stale_after() == float("inf")


def test_a_waiter_cancelled_after_it_was_handed_the_turn_passes_it_on() -> None:
    gate = ReadingGate()

    async def run() -> None:
        await gate.acquire(0.0)
        first = asyncio.create_task(gate.acquire(0.0))
        second = asyncio.create_task(gate.acquire(0.0))
        await asyncio.sleep(0)
        gate.release()  # hands the turn to `first` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.wait_for(second, 5)  # the turn reached `second` all the same
        assert gate.locked() and gate.waiting == 0
        gate.release()
        assert not gate.locked()

    asyncio.run(run())
