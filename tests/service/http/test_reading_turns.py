"""ServiceState.reading: requests of a burst are read one per turn of the event loop, so that the engine's
answers that come meanwhile go out between two reads instead of after the whole burst."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import anyio

from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.http.state import ServiceState


def _state() -> ServiceState:
    engine = SimpleNamespace(front_costs=FrontEndCosts())
    return ServiceState(settings=None, checkpoint_path=Path("."), runner=None, profile=None, engine=engine,  # type: ignore[arg-type]
                        metrics=None, decode_limiter=anyio.CapacityLimiter(1))  # type: ignore[arg-type]  # fmt: skip


def test_an_answer_that_comes_during_a_burst_goes_out_before_the_next_read() -> None:
    state, order = _state(), []

    async def request(index: int) -> None:
        async with state.reading():  # none of them suspends while it reads, as a real request's parsing
            order.append(f"read {index}")
            if index == 0:  # the engine's first answer reaches the loop while the first request is read
                asyncio.get_running_loop().call_soon(order.append, "answer")

    async def burst() -> None:
        await asyncio.gather(*(request(index) for index in range(8)))

    asyncio.run(burst())
    assert order[:2] == ["read 0", "answer"]
    assert order[2:] == [f"read {index}" for index in range(1, 8)]


def test_a_lone_request_reads_at_once_and_the_turn_is_free_again_after() -> None:
    state = _state()

    async def twice() -> None:
        async with state.reading():
            pass
        await asyncio.sleep(0)  # the turn is handed on at the loop's next turn
        assert state._reading is not None and not state._reading.locked()
        async with state.reading():
            pass

    asyncio.run(asyncio.wait_for(twice(), 5))  # a turn never handed on would hang the second read
