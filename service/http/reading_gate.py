"""Whose turn it is to be read (parsed, admitted, decoded and handed to the engine): one request at a time on
the event loop (service.http.state.ServiceState.reading), in arrival order unless that order is failing.

Clients that resend at once after a 503 keep as many requests in the front end as there are clients. Read in
arrival order, each of them waits for all the others, arrives at admission older than its budget and is
refused, and the server answers next to nobody while it is busy refusing (docs/performance.md, "A flood of
retries"). So the gate learns from the reads it hands out how long a request can wait and still be admitted
(the 90th percentile of the waits of recent admitted reads; no limit while nothing is refused). A waiter older
than that is probably stale: the turn goes to the oldest waiter that is not, or to the newest when all are.
That is arrival order whenever it works, a burst included, and deadline order (the oldest that can still
make it first) when it does not. Nobody waits for ever: while one has waited `PATIENCE_S`, every other turn
goes to the oldest, and admission decides from its own budget whether it can still be served. Every other
turn, not every turn: with more clients than the front end reads in `PATIENCE_S`, every request waits that
long, and oldest first would be arrival order again. Compare adaptive LIFO, as Maurer describes Facebook's
servers ("Fail at scale", ACM Queue 2015), which switches on a fixed queueing delay instead.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PATIENCE_S = 0.1  # after this long, a request is read no later than every other turn
MEMORY_S = 1.0  # reads older than this no longer teach the gate anything
MEMORY_READS = 64  # nor do more than this many
MIN_ADMITTED = 8  # admitted reads needed to learn a wait; fewer, with refusals: STALE_FLOOR_S
STALE_FLOOR_S = 0.005  # the least wait ever called stale


@dataclass(order=True)
class _Waiter:
    since: float  # when the request's first byte was read
    order: int
    turn: asyncio.Future[None] = field(compare=False)


class ReadingGate:
    """A lock whose waiters are taken oldest first while that works (see the module). `since` is each request's
    first byte, on `clock`; `record` tells the gate how each read ended."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held = False
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._reads: collections.deque[tuple[float, float, bool]] = collections.deque(maxlen=MEMORY_READS)
        self._overdue_turn = False  # whether the next turn goes to an overdue oldest waiter, if there is one

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def record(self, waited_s: float, admitted: bool) -> None:
        """A read ended: after waiting `waited_s` since its first byte, the request was admitted, or refused as
        too late for its budget."""
        self._reads.append((self._clock(), waited_s, admitted))

    def stale_after(self) -> float:
        """How long a waiter can wait and probably still be admitted (inf while nothing was refused lately)."""
        reads, oldest = self._reads, self._clock() - MEMORY_S
        while reads and reads[0][0] < oldest:  # in the order they were recorded: the aged ones are on the left
            reads.popleft()
        if all(admitted for _, _, admitted in reads):
            return math.inf
        admitted = sorted(waited for _, waited, ok in reads if ok)
        if len(admitted) < MIN_ADMITTED:
            return STALE_FLOOR_S
        return max(STALE_FLOOR_S, admitted[int(0.9 * (len(admitted) - 1))])

    async def acquire(self, since: float) -> None:
        if not self._held and not self._waiters:
            self._held = True
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
        now, stale_after = self._clock(), self.stale_after()
        oldest = min(self._waiters)
        if now - oldest.since < stale_after:
            return oldest
        if now - oldest.since >= PATIENCE_S:
            self._overdue_turn = not self._overdue_turn
            if self._overdue_turn:
                return oldest
        fresh = [w for w in self._waiters if now - w.since < stale_after]
        return min(fresh) if fresh else max(self._waiters)
