"""ReadingGate: the turn to be read goes oldest first while the front end keeps up or works off a burst, newest
first while a queue stands, and every other turn to a request passed over for PATIENCE_S."""

from __future__ import annotations

import asyncio

from elastic_anytime.service.http.reading_gate import INTERVAL_S, PATIENCE_S, STANDING_S, ReadingGate


def _order_of_turns(now: float, arrivals: list[float], kept_up_at: float | None = None) -> list[float]:
    """Hold the gate, queue one request per arrival time (seconds on a clock that reads `now`), then release it
    and let each waiter pass the turn on: the arrival times in the order they were read. `kept_up_at`: when a
    request was last read without waiting (by default long enough ago that a queue stands)."""
    clock = [now - INTERVAL_S - 0.001 if kept_up_at is None else kept_up_at]
    gate, read = ReadingGate(clock=lambda: clock[0]), []

    async def request(since: float) -> None:
        await gate.acquire(since)
        read.append(since)
        gate.release()

    async def run() -> None:
        await gate.acquire(now)  # the gate was free: it kept up at the clock's first reading
        clock[0] = now
        tasks = [asyncio.create_task(request(since)) for since in arrivals]
        await asyncio.sleep(0)  # every request is waiting
        assert gate.waiting == len(arrivals)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert not gate.locked()

    asyncio.run(run())
    return read


def test_a_front_end_that_keeps_up_reads_in_arrival_order() -> None:
    now = 10.0
    arrivals = [now - STANDING_S / 2, now - STANDING_S / 4, now - STANDING_S / 8]
    assert _order_of_turns(now, arrivals) == arrivals


def test_while_a_queue_stands_the_newest_request_is_read_first() -> None:
    now = 10.0
    arrivals = [now - 3 * STANDING_S, now - 2 * STANDING_S, now - STANDING_S / 10]
    # the clock stands still here: the oldest keeps its wait, so each turn goes to the newest left
    assert _order_of_turns(now, arrivals) == sorted(arrivals, reverse=True)


def test_a_burst_is_read_in_arrival_order_until_a_queue_stands() -> None:
    now = 10.0
    arrivals = [now - 3 * STANDING_S, now - 2 * STANDING_S, now - STANDING_S / 10]
    # the front end kept up until just now: these requests are a burst being worked off, not a standing queue
    assert _order_of_turns(now, arrivals, kept_up_at=now - INTERVAL_S / 2) == arrivals


def test_a_request_passed_over_for_its_patience_goes_before_newer_ones() -> None:
    now = 10.0
    overdue, standing, fresh = now - PATIENCE_S - 0.001, now - 2 * STANDING_S, now
    assert _order_of_turns(now, [fresh, standing, overdue]) == [overdue, fresh, standing]


def test_when_every_request_is_overdue_fresh_ones_still_get_every_other_turn() -> None:
    # more clients than the front end reads in PATIENCE_S: oldest first alone would be arrival order again
    now = 10.0
    overdue = [now - PATIENCE_S - 0.004, now - PATIENCE_S - 0.003, now - PATIENCE_S - 0.002]
    fresh = [now - 0.0002, now - 0.0001, now]
    assert _order_of_turns(now, overdue + fresh) == [overdue[0], fresh[2], overdue[1], fresh[1], overdue[2], fresh[0]]


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
