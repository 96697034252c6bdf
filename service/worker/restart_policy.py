"""When to restart the inference process after it exits, and when to stop calling the server alive.

`service.worker.client.EngineProcess` replaces a child that exits (killed, out of memory, a CUDA
error) and asks this policy two things:

* how long to wait before the next start: the first restart goes at once (`first_delay_s`), each
  further one in a row waits twice as long as the one before (0.5 s, 1 s, 2 s, 4 s, 8 s), at most
  `max_delay_s`. The row ends, and the next restart goes at once again, once a child has served for
  `stable_s`: a child that keeps dying soon after it said ready is backed off too.
* whether the server is still alive (liveness): it is, unless `max_failures` restarts failed within
  the last `window_s` seconds. A restart fails when its new child exits, or reports a failure,
  before it says ready. A server that cannot heal then fails its liveness probe, so that the
  orchestrator replaces it; it goes on trying meanwhile, and a restart that succeeds makes it alive
  again at once.

Pure: no torch, no processes, no threads; the clock is injectable (tests drive a fake one).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RestartPolicy:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        first_delay_s: float = 0.0,
        base_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        max_failures: int = 3,
        window_s: float = 60.0,
        stable_s: float = 30.0,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or base_delay_s < 0 or max_delay_s < 0 or first_delay_s < 0:
            raise ValueError("max_failures ≥ 1, window_s > 0 and delays ≥ 0")
        self.clock = clock
        self.first_delay_s, self.base_delay_s, self.max_delay_s = first_delay_s, base_delay_s, max_delay_s
        self.max_failures, self.window_s, self.stable_s = max_failures, window_s, stable_s
        self.restarts = 0  # restarts begun, ever
        self.attempt = 0  # restarts in a row since a child last served for stable_s (0: none)
        self._failures: deque[float] = deque()  # when restarts failed, the last window_s seconds of them
        self._ready_at: float | None = None  # when the current child said ready (None: it has not)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` of a row (1: the first)."""
        if attempt <= 1:
            return self.first_delay_s
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 2))

    def child_exited(self) -> float:
        """The child exited (or reported a failure): count a failed restart if it was a restart that never
        became ready, and begin the next restart. Returns the seconds to wait before starting it."""
        now = self.clock()
        if self._ready_at is None:
            if self.attempt:  # a replacement that never said ready: a failed restart
                self._failures.append(now)
        elif now - self._ready_at >= self.stable_s:  # it served long enough: a new row begins
            self.attempt = 0
        self._ready_at = None
        self.attempt += 1
        self.restarts += 1
        return self.delay(self.attempt)

    def child_ready(self) -> None:
        """The current child said ready: a restart that gets here has succeeded, and the server is alive
        again whatever failed before it."""
        self._ready_at = self.clock()
        self._failures.clear()

    def recent_failures(self) -> int:
        """Failed restarts within the last window_s seconds."""
        horizon = self.clock() - self.window_s
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()
        return len(self._failures)

    @property
    def live(self) -> bool:
        """Fewer than max_failures restarts failed within the last window_s seconds."""
        return self.recent_failures() < self.max_failures
