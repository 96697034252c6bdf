"""When a request really arrived, and whether its client is still there: a uvicorn HTTP protocol that
stamps each request with the time its first bytes were read, and tells the request's handler when
the connection is lost. It also sends each response's head and body in one write (service.http.coalescing).

A budget is the client's: it starts when the request reaches the server, not when the route handler
gets to run. Under bursts the event loop parses requests one after another, and the handler of the
last one runs milliseconds after its bytes were read; a clock started in the handler hides that wait.
The earliest point the server sees is `data_received`, so the stamp is taken there.

It also counts the requests this process has begun reading and not finished answering
(`open_requests`): in a burst, the handlers of the requests read in one go run one after another, and
an answer for the first waits for the loop to finish reading the others. Admission and the engine
plan for that wait.

`elastic serve` passes `ArrivalProtocol` to uvicorn (`http=`). Under another server (a test client,
or uvicorn without it) there is no stamp, `arrival_of` falls back to the handler's own clock and
`open_requests` to None.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from elastic_anytime.service.http.coalescing import CoalescingTransport

log = logging.getLogger(__name__)

SCOPE_KEY = "elastic.arrival"
_open = {"requests": 0, "protocol": False}  # this process's requests begun and not answered (event loop only)


def open_requests() -> int | None:
    """Requests this process has begun reading and not finished answering; None without ArrivalProtocol."""
    return _open["requests"] if _open["protocol"] else None


@dataclass
class ArrivalStamp:
    """What the protocol knows about one request: when its first byte was read (CLOCK_MONOTONIC, the
    engine's clock), and what to call if its connection is lost before the response is complete."""

    first_byte: float
    complete: float | None = None  # when its last byte was read (None: not yet, or not known)
    others_open: int = 0  # other requests this process had begun and not answered when this one began
    gone: bool = False
    _on_gone: list[Callable[[], None]] = field(default_factory=list)

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (on the event loop) if the client goes away; returns a function that undoes this."""
        if self.gone:
            callback()
            return lambda: None
        self._on_gone.append(callback)

        def forget() -> None:
            if callback in self._on_gone:
                self._on_gone.remove(callback)

        return forget

    def disconnected(self) -> None:
        self.gone = True
        callbacks, self._on_gone = self._on_gone, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from running
                log.warning("disconnect callback failed", exc_info=True)


def arrival_of(scope: MutableMapping[str, Any], clock: Callable[[], float] = time.monotonic) -> ArrivalStamp:
    """The request's arrival, or one stamped now when the server set none (kept in the scope)."""
    arrival = scope.get(SCOPE_KEY)
    if arrival is None:
        arrival = scope[SCOPE_KEY] = ArrivalStamp(clock())
    return arrival


class ArrivalProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: each request's scope carries an `ArrivalStamp` stamped when the
    first bytes of that request were read, and told when the connection is lost mid-request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_byte: float | None = None  # bytes of a request not begun yet were read at this time
        self._in_message = False
        self._arrival: ArrivalStamp | None = None  # the request whose response is being made
        self._begun = 0  # requests of this connection begun and not answered (pipelining: several)
        _open["protocol"] = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # a response's head and body in one write (service.http.coalescing)
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if not self._in_message and self._first_byte is None:
            self._first_byte = time.monotonic()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self._begun += 1
        others, _open["requests"] = _open["requests"], _open["requests"] + 1
        # pipelined requests read in one go share the stamp of that read
        first_byte, self._first_byte = self._first_byte, None
        self._arrival = ArrivalStamp(time.monotonic() if first_byte is None else first_byte, others_open=others)
        self.scope[SCOPE_KEY] = self._arrival  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._arrival is not None:
            self._arrival.complete = time.monotonic()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._answered()
        super().on_response_complete()

    def _answered(self, count: int = 1) -> None:
        count = min(count, self._begun)
        self._begun -= count
        _open["requests"] -= count

    def connection_lost(self, exc: Exception | None) -> None:
        cycle, arrival = self.cycle, self._arrival
        super().connection_lost(exc)
        self._answered(self._begun)  # what was begun and never answered: nobody is waiting for it any more
        if arrival is not None and cycle is not None and cycle.disconnected:
            arrival.disconnected()
