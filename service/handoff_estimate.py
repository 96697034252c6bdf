"""How long an answer takes from the engine to its request's handler, as a recent high quantile.

The engine decides with the deadline in view: it stops a request at the last exit whose answer is
predicted in time. Its answer then still has to reach the handler: a thread wake-up, or with the
process engine a pipe message and a busy event loop. Under load that hand-off grew to milliseconds
here (docs/performance.md), which a fixed response margin does not cover. The handler measures every
hand-off; the engine keeps this much more room before each deadline (and refuses on arrival what
would only be in time without it).
"""

from __future__ import annotations

import collections
import threading

WINDOW = 256  # about the last second at a few hundred requests a second
REFRESH_EVERY = 16  # recompute the quantile every this many observations (sorting the window costs ~20 µs)


class HandoffEstimate:
    """A rolling quantile (`quantile` in (0, 1)) of the last WINDOW hand-off times, in seconds; 0 until
    there are any. Thread-safe: observed on the event loop, read by the engine."""

    def __init__(self, quantile: float = 0.99) -> None:
        self.quantile = quantile
        self.seconds = 0.0
        self._window: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._since_refresh = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> float:
        """Record one hand-off; returns the current estimate."""
        with self._lock:
            self._window.append(max(0.0, seconds))
            self._since_refresh += 1
            if self._since_refresh >= REFRESH_EVERY or len(self._window) < REFRESH_EVERY:
                self._since_refresh = 0
                ordered = sorted(self._window)
                self.seconds = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
            return self.seconds
