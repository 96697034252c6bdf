"""Where everything the engine hands back leaves it: answers, refusals, failures and streamed partial answers.

A job waits in one of two ways. In the server's own process (the thread engine) it is an asyncio future,
resolved on its loop through that loop's `LoopChannel`; in the inference process it is a `Reply`, settled
here and sent up the pipe by `deliver`. The sink hides the difference from the scheduler, and groups the
answers of one exit: they are posted first and go out together (`flush`), one wake-up per loop or one
delivery, before the next stage runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from elastic_anytime.service.engine.handoff import LoopChannel
from elastic_anytime.service.engine.types import Answer, Job, Reply


class AnswerSink:
    def __init__(self) -> None:
        self._channels: dict[asyncio.AbstractEventLoop, LoopChannel] = {}  # where answers go, per event loop
        self._unwoken: set[LoopChannel] = set()  # answers posted, loop not woken yet
        # the inference process: sends what the Replies hold (service.worker.host); None in the server's process
        self.deliver: Callable[[], None] | None = None
        self._undelivered = False  # Replies settled, `deliver` not called since

    def open_channel(self, loop: asyncio.AbstractEventLoop) -> None:
        """The answer channel to `loop`, opened from that loop's own thread (else answers fall back to
        call_soon_threadsafe)."""
        channel = self._channels.get(loop)
        if channel is not None and not channel.closed:
            return
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                self._channels[loop] = LoopChannel(loop)

    def settle(
        self,
        future: asyncio.Future | Reply,
        answer: Answer | None = None,
        error: BaseException | None = None,
        at_once: bool = True,
    ) -> None:
        """Resolve `future` with `answer` or `error` (from any thread) unless it is done already. `at_once`
        False: it goes out with the rest of its exit, at the next `flush`."""
        if not isinstance(future, asyncio.Future):  # a Reply: sent by `deliver`, from this thread
            if not future.done():
                future.settle(answer, error)
                self._delivered_later(at_once)
            return

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answer)

        self._post(future.get_loop(), settle, at_once)

    def progress(self, job: Job, partial: Answer) -> None:
        """A streamed job's partial answer (it goes on from this exit) to its sink, without settling the job;
        it goes out at the next `flush`, before the job's own answer."""
        future, sink = job.future, job.progress
        assert sink is not None
        if not isinstance(future, asyncio.Future):  # a Reply (the inference process): its sink sends it up
            sink(partial)
            self._delivered_later(at_once=False)
            return

        def forward() -> None:
            if not future.done():  # the client may have gone away meanwhile
                sink(partial)

        self._post(future.get_loop(), forward, at_once=False)

    def flush(self) -> None:
        """Send what was posted since the last flush: wake each loop once, deliver the Replies."""
        while self._unwoken:
            self._unwoken.pop().wake()
        if self._undelivered and self.deliver is not None:
            self._undelivered = False
            self.deliver()

    def close(self) -> None:
        """Close every channel, each on its own loop, after running what is still queued there."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                channel.loop.call_soon_threadsafe(channel.close)

    def _delivered_later(self, at_once: bool) -> None:
        if self.deliver is None:
            return
        if at_once:
            self.deliver()
        else:
            self._undelivered = True

    def _post(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], at_once: bool) -> None:
        """Run `callback` on `loop` (from any thread): through its channel, woken now or at the next `flush`,
        or else through call_soon_threadsafe."""
        channel = self._channels.get(loop)
        if channel is None or channel.closed:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(callback)
            return
        channel.post(callback)
        if at_once:
            channel.wake()
        else:
            self._unwoken.add(channel)
