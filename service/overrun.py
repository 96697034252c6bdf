"""The overrun watch: answer at the deadline from the last exit a request passed, when the stage it is
in runs late.

The engine sends a request deeper only when the next exit is predicted (p99 plus a margin) to answer
in time. A stage can still run past that: this machine's other processes take the core, a batch
meets a cold cache. Rather than answer late from the deeper exit, a thread of its own wakes shortly
before the deadline of every request still in a running stage, reads the exit head that request
passed last, on the features that stage started from (kept; stages do not write their inputs, which
the runner checks at load), and answers from there. The deeper stage's result for it is dropped.

This module is the timer: a heap of (time, job) and a thread that hands the jobs whose time has come
to a callback. What to answer, and the one-answer-per-job rule, are the engine's (`Engine._overrun`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Passed:
    """The last exit a request in a running stage went past: what the watch can answer it from."""

    exit_index: int
    features: Any  # the output of stage `exit_index` for the whole batch, as it was then
    row: int  # the request's row in `features`
    runner: Any  # the runner that made `features` (a reload may swap the engine's since)
    mflops: float  # what an answer from this exit reports: its path and the earlier heads read
    started: float  # when the request's batch started (its queue time ends there)


class OverrunWatch:
    """Calls `due(jobs)` from its own thread with the jobs whose armed time (on `clock`) has come."""

    def __init__(self, clock: Callable[[], float], due: Callable[[list[Any]], None]) -> None:
        self._clock, self._due = clock, due
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wakeup = Wakeup()  # not a Condition, for the reason in service.wakeup
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="elastic-overrun", daemon=True)
        self._thread.start()

    def arm(self, entries: list[tuple[float, Any]]) -> None:
        """Hand each (time, job) of `entries` to `due` once that time has come. Wakes the thread only
        when one of them comes before everything armed so far (it sleeps until the earliest)."""
        if not entries:
            return
        with self._lock:
            earliest = self._heap[0][0] if self._heap else float("inf")
            for at, job in entries:
                heapq.heappush(self._heap, (at, next(self._seq), job))
            wake = self._heap[0][0] < earliest
        if wake:
            self._wakeup.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._lock:
            self._stopped = True
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._wakeup.close()

    def _main(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = self._clock()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                timeout = None if due or not self._heap else self._heap[0][0] - now
            if due:
                try:
                    self._due(due)
                except Exception:  # the watch must outlive one bad answer: the engine answers the rest
                    log.exception("answering %d overrun requests failed", len(due))
                continue
            self._wakeup.wait(timeout)
