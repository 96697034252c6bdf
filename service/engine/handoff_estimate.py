"""How long an answer takes from the engine to its request's handler, as a recent high quantile.

The engine decides with the deadline in view: it stops a request at the last exit whose answer is
predicted in time. Its answer then still has to reach the handler: a thread wake-up, or with the
process engine a pipe message and a busy event loop. Under load that hand-off grew to milliseconds
here (docs/performance.md), which a fixed response margin does not cover. The handler measures every
hand-off; the engine keeps this much more room before each deadline (and refuses on arrival what
would only be in time without it).

Only the last second counts: a burst that slowed hand-offs must not make the engine refuse tight
budgets for good (refused requests are never answered, so they would never bring the estimate down).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

WINDOW = 256  # hand-offs at most
HORIZON_S = 1.0  # and none older than this
REFRESH_EVERY = 16  # recompute the quantile every this many observations (sorting the window costs ~20 µs)


class HandoffEstimate:
    """A rolling quantile (`quantile` in (0, 1)) of recent hand-off times, in seconds; 0 without any.
    Thread-safe: observed on the event loop, read by the engine."""

    def __init__(
        self, quantile: float = 0.99, clock: Callable[[], float] = time.monotonic, horizon_s: float = HORIZON_S
    ) -> None:
        self.quantile = quantile
        self.clock = clock
        self.horizon_s = horizon_s
        self._seconds = 0.0
        self._window: collections.deque[tuple[float, float]] = collections.deque(maxlen=WINDOW)  # (when, seconds)
        self._since_refresh = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._window.append((self.clock(), max(0.0, seconds)))
            self._since_refresh += 1
            if self._since_refresh >= REFRESH_EVERY or len(self._window) <= REFRESH_EVERY:
                self._refresh()

    @property
    def seconds(self) -> float:
        """The current estimate (cheap unless samples have just aged out)."""
        window = self._window
        if window and window[0][0] < self.clock() - self.horizon_s:
            with self._lock:
                self._refresh()
        return self._seconds

    def _refresh(self) -> None:
        """Lock held: drop what is too old, recompute the quantile."""
        oldest = self.clock() - self.horizon_s
        while self._window and self._window[0][0] < oldest:
            self._window.popleft()
        self._since_refresh = 0
        ordered = sorted(seconds for _, seconds in self._window)
        self._seconds = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))] if ordered else 0.0
