"""Whose turn it is to be read (parsed, admitted, decoded and handed to the engine): one request at a time on
the event loop (service.http.state.ServiceState.reading), in arrival order while the front end keeps up, and
newest first while a queue stands.

Clients that resend at once after a 503 keep as many requests in the front end as there are clients. Read in
arrival order, each of them waits for all the others, arrives at admission older than its budget and is
refused, and the server answers next to nobody while it is busy refusing (docs/performance.md, "A flood of
retries"). A queue stands when no request has been read within `STANDING_S` of its first byte for `INTERVAL_S`
(CoDel's target and interval): a burst is worked off in arrival order, a flood is not. While one stands, the
turn goes to the newest request: it still has its budget. Nobody waits for ever behind newer requests: while
one has waited `PATIENCE_S`, every other turn goes to the oldest, and admission decides from its own budget
whether it can still be served. Every other turn, not every turn: with more clients than the front end reads
in `PATIENCE_S`, every request waits that long, and oldest first would be arrival order again. This is
adaptive LIFO as Maurer describes Facebook's servers ("Fail at scale", ACM Queue 2015).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STANDING_S = 0.005  # a request read within this long of its first byte was not held up by a queue
INTERVAL_S = 0.1  # a queue that held every request up for this long stands (a burst is read sooner)
PATIENCE_S = 0.1  # after this long, a request is read no later than every other turn


@dataclass(order=True)
class _Waiter:
    since: float  # when the request's first byte was read
    order: int
    turn: asyncio.Future[None] = field(compare=False)


class ReadingGate:
    """A lock whose waiters are taken oldest first, or newest first while a queue stands (see the module),
    turn about with the oldest once it has waited PATIENCE_S. `since` is each request's first byte, on `clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held = False
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._kept_up_at = clock()  # when a request was last read within STANDING_S of its first byte
        self._overdue_turn = False  # whether the next turn goes to an overdue oldest waiter, if there is one

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, since: float) -> None:
        if not self._held and not self._waiters:
            self._held = True
            self._kept_up_at = self._clock()
            return
        waiter = _Waiter(since, next(self._order), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.turn
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.turn.done() and not waiter.turn.cancelled():  # handed the turn, gone before taking it
                self.release()
            raise

    def release(self) -> None:
        """Hand the turn to the next waiter (see the module's docstring), or free the gate."""
        self._waiters = [w for w in self._waiters if not w.turn.done()]
        if not self._waiters:
            self._held = False
            return
        waiter = self._next()
        self._waiters.remove(waiter)
        waiter.turn.set_result(None)

    def _next(self) -> _Waiter:
        now = self._clock()
        oldest = min(self._waiters)
        waited = now - oldest.since
        if waited < STANDING_S:
            self._kept_up_at = now
            return oldest
        if now - self._kept_up_at < INTERVAL_S:  # a burst being worked off, or a queue not standing yet
            return oldest
        if waited >= PATIENCE_S:
            self._overdue_turn = not self._overdue_turn
            if self._overdue_turn:
                return oldest
        return max(self._waiters)
