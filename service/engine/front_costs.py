"""What the front end costs around the engine, measured by the request handlers: how long a lone request
takes to be read (up to admission), how long any request takes from admission to its submission
(the image decoded), and how long an answer takes from the engine to its response (for a lone
request with the way in added: with the process engine a pipe and a wake-up each way).

Admission needs both. A budget covers the whole request, from its first byte in to its last byte out;
the engine's exits are only the middle of it. Lone requests (nothing else in the front end) are kept
apart, over a long horizon: they say what an idle server needs at least (the 422 floor), and sparse
traffic brings few of them. Answers under load use the last second only (a burst that is over must
not refuse anyone). Every request that reaches admission is counted, refused or not, so that refusals
cannot freeze the figures; the first few of each are not, since the first requests after start-up
pay one-time costs (measured here: 9 ms for the first read, against 0.7 ms after, and the next few
still slow). The typical costs are their lower quartile: a floor set too high refuses what an idle
server would have served, the complaint this rule exists to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from elastic_anytime.service.engine.admission import FrontEnd
from elastic_anytime.service.engine.handoff_estimate import HandoffEstimate

LONE_HORIZON_S = 120.0
SKIP_FIRST = 8
OUT_TAIL = 0.9
# a lone figure rests on at least this many requests, else it reads 0 (the request is taken): one slow request
# after a long idle spell must not set a floor that refuses every request that could replace its figure
MIN_LONE_EVIDENCE = 3
TYPICAL = 0.25  # the quantile of the typical costs: the idle floor errs towards taking a request, not refusing it


class _Estimate(HandoffEstimate):
    """A rolling quantile that ignores its first SKIP_FIRST observations and reads 0 until it rests on
    `evidence` observations within its horizon."""

    def __init__(self, quantile: float, clock: Callable[[], float], horizon_s: float, evidence: int = 1) -> None:
        super().__init__(quantile, clock, horizon_s)
        self._skip = SKIP_FIRST
        self._evidence = evidence

    @property
    def seconds(self) -> float:
        value = super().seconds
        return value if len(self._window) >= self._evidence else 0.0

    def observe(self, seconds: float) -> None:
        if self._skip:
            self._skip -= 1
            return
        super().observe(seconds)


class FrontEndCosts:
    """Rolling estimates, observed on the event loop and read by admission and the engine.

    `out_quantile` (0..1) for answers under load; None keeps no room for them (only the lone floor).
    """

    def __init__(self, out_quantile: float | None = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.lone_intake = _Estimate(TYPICAL, clock, LONE_HORIZON_S, MIN_LONE_EVIDENCE)
        self.decode = _Estimate(TYPICAL, clock, LONE_HORIZON_S)
        # the idle floor's: load slows decoding
        self.lone_decode = _Estimate(TYPICAL, clock, LONE_HORIZON_S, MIN_LONE_EVIDENCE)
        self.read = _Estimate(0.5, clock, LONE_HORIZON_S)
        self.lone_out = _Estimate(TYPICAL, clock, LONE_HORIZON_S, MIN_LONE_EVIDENCE)
        self.out = None if out_quantile is None else _Estimate(out_quantile, clock, 1.0)
        self.out_tail = None if out_quantile is None else _Estimate(OUT_TAIL, clock, 1.0)  # what deeper exits plan for

    def observe_intake(self, seconds: float, lone: bool) -> None:
        """The server took `seconds` to read a request (from its last byte in, when known, to admission)."""
        if lone:
            self.lone_intake.observe(seconds)

    def observe_read(self, seconds: float) -> None:
        """The event loop spent `seconds` reading, parsing and decoding one request (its handler's start to
        its submission: in a burst the body is there already, so nothing else runs in between)."""
        self.read.observe(seconds)

    def observe_decode(self, seconds: float, lone: bool = False) -> None:
        """A request went from admission to its submission (its image decoded) in `seconds`."""
        self.decode.observe(seconds)
        if lone:
            self.lone_decode.observe(seconds)

    def observe_out(self, seconds: float, lone: bool, handed_in_s: float = 0.0) -> None:
        """An answer took `seconds` from the engine to its response; a lone request also took `handed_in_s`
        from its submission into the engine's queue (counted with its way out: both are the hand-over)."""
        if lone:
            self.lone_out.observe(seconds + handed_in_s)
        elif self.out is not None and self.out_tail is not None:
            self.out.observe(seconds)
            self.out_tail.observe(seconds)

    def now(self) -> FrontEnd:
        return FrontEnd(
            lone_intake_s=self.lone_intake.seconds,
            decode_s=self.decode.seconds,
            lone_decode_s=self.lone_decode.seconds,
            read_s=self.read.seconds,
            lone_out_s=self.lone_out.seconds,
            out_s=0.0 if self.out is None else self.out.seconds,
            out_tail_s=0.0 if self.out_tail is None else self.out_tail.seconds,
        )
