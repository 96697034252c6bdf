"""Handing callbacks to an event loop from another thread: order, one wake-up for many, close drains."""

from __future__ import annotations

import asyncio
import threading

import uvloop

from elastic_anytime.service.engine.handoff import LoopChannel


def run_on(loop_factory, main) -> object:  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_posts_from_a_thread_run_on_the_loop_in_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        channel = LoopChannel(loop)
        seen: list[tuple[int, bool]] = []
        done = loop.create_future()

        def producer() -> None:
            for i in range(50):
                channel.post(lambda i=i: seen.append((i, threading.current_thread() is threading.main_thread())))
            channel.post(lambda: done.set_result(True))
            channel.wake()  # one wake-up for all of them

        threading.Thread(target=producer).start()
        await asyncio.wait_for(done, 10)
        assert seen == [(i, True) for i in range(50)]  # in order, on the loop's (main) thread
        channel.close()
        assert channel.closed

    run_on(asyncio.new_event_loop, main)  # both loops uvicorn may use
    run_on(uvloop.new_event_loop, main)


def test_close_runs_what_is_still_queued() -> None:
    async def main() -> list[int]:
        channel = LoopChannel(asyncio.get_running_loop())
        ran: list[int] = []
        channel.post(lambda: ran.append(1))  # posted, never woken
        channel.close()
        channel.wake()  # after close: nothing to wake, no error
        return ran

    assert run_on(uvloop.new_event_loop, main) == [1]
