"""Graceful shutdown: drain before uvicorn closes the door.

Left alone, uvicorn answers SIGTERM by closing its listening socket at once and then closing every
connection that has no request in progress. A connection the kernel has already accepted, or one
whose request bytes have arrived but not yet been parsed, is then cut without an answer: an
accepted request lost. So the first SIGTERM (or SIGINT) only marks the service as shutting down:
classify answers 503 + Retry-After (an answer, not a reset), /readyz answers 503 so load balancers
stop sending, and requests already accepted run to the end. Once none is in flight, the engine
queue is empty and no request has arrived for `drain_quiet_s`, the signal is handed to uvicorn,
which stops listening and exits (after the lifespan drains the engine once more). A second signal,
or `drain_timeout_s` passing, hands it over at once.

Signal handlers can only be set from the main thread: elsewhere (e.g. tests driving the app in a
thread) this does nothing and uvicorn's own behaviour applies.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from elastic_anytime.service.http.state import ServiceState

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.05


def is_drained(service: ServiceState, now: float) -> bool:
    quiet = now - service.last_request >= service.settings.drain_quiet_s
    return service.in_flight == 0 and service.engine.queue_depth == 0 and quiet


async def _drain_then(service: ServiceState, hand_over: Callable[[], None]) -> None:
    settings = service.settings
    started = time.monotonic()
    deadline = started + settings.drain_timeout_s
    while not is_drained(service, time.monotonic()) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
    if is_drained(service, time.monotonic()):
        log.info("drained in %.2fs: closing the listener", time.monotonic() - started)
    else:
        log.warning(
            "drain timeout (%.0fs): closing with %d requests in flight, %d queued",
            settings.drain_timeout_s, service.in_flight, service.engine.queue_depth,
        )  # fmt: skip
    hand_over()


def install_drain(service: ServiceState, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Wrap the current SIGTERM/SIGINT handlers (uvicorn's) with the drain; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    tasks: set[asyncio.Task] = set()

    def pass_on(sig: int, frame: FrameType | None) -> None:
        handler = previous[sig]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:  # nobody else listens: behave as if we never had
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if service.shutting_down:  # second signal: no more waiting
            pass_on(sig, frame)
            return
        service.shutting_down = True
        log.info("%s: refusing new requests, finishing %d in flight", signal.Signals(sig).name, service.in_flight)

        def start() -> None:
            task = loop.create_task(_drain_then(service, lambda: pass_on(sig, frame)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.call_soon_threadsafe(start)

    for sig in SIGNALS:
        signal.signal(sig, on_signal)

    def undo() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)

    return undo
