"""What the front end costs around the engine, measured by the request handlers: how long a lone request
takes to be read and decoded, and how long an answer takes from the engine to its response.

Admission needs both. A budget covers the whole request, from its first byte in to its last byte out;
the engine's exits are only the middle of it. Lone requests (nothing else in the front end) are kept
apart, over a long horizon: they say what an idle server needs at least (the 422 floor), and sparse
traffic brings few of them. Answers under load use the last second only (a burst that is over must
not refuse anyone).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.admission import FrontEnd
from service.handoff_estimate import HandoffEstimate

LONE_HORIZON_S = 120.0


class FrontEndCosts:
    """Rolling estimates, observed on the event loop and read by admission and the engine.

    `out_quantile` (0..1) for answers under load; None keeps no room for them (only the lone floor).
    """

    def __init__(self, out_quantile: float | None = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.lone_intake = HandoffEstimate(0.5, clock, horizon_s=LONE_HORIZON_S)
        self.lone_out = HandoffEstimate(0.5, clock, horizon_s=LONE_HORIZON_S)
        self.out = None if out_quantile is None else HandoffEstimate(out_quantile, clock)

    def observe_intake(self, seconds: float, lone: bool) -> None:
        """A request was read and decoded (first byte to admission) in `seconds`."""
        if lone:
            self.lone_intake.observe(seconds)

    def observe_out(self, seconds: float, lone: bool) -> None:
        """An answer took `seconds` from the engine to its response."""
        if lone:
            self.lone_out.observe(seconds)
        elif self.out is not None:
            self.out.observe(seconds)

    def now(self) -> FrontEnd:
        return FrontEnd(
            lone_intake_s=self.lone_intake.seconds,
            lone_out_s=self.lone_out.seconds,
            out_s=0.0 if self.out is None else self.out.seconds,
        )
