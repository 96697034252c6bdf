"""Admission: take a request with a deadline, or refuse it at once, truthfully.

One rule, shared by the in-process engine and the inference process's parent, so that they never
disagree. A request is refused only when its first exit is predicted late, and the refusal names
the cause:

- **422 `budget_too_small`** (`DeadlineUnmeetableError`): the budget is below what an idle server
  typically needs for a first answer once it has read the request: exit 0 after an idle spell (the
  profile's cold cells, their median) plus the front end's own typical cost for a lone request
  (decoding, the hand-over both ways). No retry can help. Between that and the tail, an idle server
  takes the request and does its best.
- **503 `overloaded`** (`BacklogError`): it would fit an idle server, but work ahead of it makes its
  first exit late: requests queued before it (EDF), the stage running now, or other requests the
  front end was reading at the same time (its intake took longer than a lone one's). The detail
  names that work. A retry, or another replica, may well serve it.

A request with nothing ahead and a budget above the idle floor is always taken, even if its own
intake was slow: an idle server is doing the best it can, and a 503 would tell the client something
false. Unless it came with others (`Ahead.crowded`, the tail of a burst) and their reading has left it
too little time for even a typical first exit: it would only be answered late, and the 503 names why.

Pure: no clock, no locks, no torch; the callers pass what they know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile


class DeadlineUnmeetableError(RuntimeError):
    """Even exit 0 cannot answer before the deadline on an idle server (422 `budget_too_small`)."""


class BacklogError(DeadlineUnmeetableError):
    """Exit 0 would fit the budget on an idle server, but work ahead makes it miss now: overload (503)."""


@dataclass(frozen=True)
class Ahead:
    """What stands between a new request and its first exit, as one engine (or its parent) sees it."""

    queued: int = 0  # requests queued ahead of it (deadlines no later than its own)
    running_s: float = 0.0  # the rest of the stage running now
    others_in_front: int = 0  # other requests the front end has begun and not handed to the engine yet
    others_in_engine: int = 0  # other requests queued or running, not ahead of it: their answers share the way out
    idle: bool = False  # the engine has been idle long enough that its next batch starts cold
    # it was not alone in the front end since its first byte: other requests were read before it (a burst), or
    # were being handled when it arrived
    crowded: bool = False

    @property
    def any(self) -> bool:
        return self.queued > 0 or self.running_s > 0 or self.others_in_front > 0 or self.others_in_engine > 0


@dataclass(frozen=True)
class FrontEnd:
    """The front end's costs around the engine, in seconds."""

    lone_intake_s: float = 0.0  # reading a request alone on the server, up to admission (typical)
    decode_s: float = 0.0  # from admission to submission: the image decoded (typical)
    lone_decode_s: float = 0.0  # the same for a request alone on the server (the idle floor's)
    read_s: float = 0.0  # the event loop's own time to read, parse and decode one request (typical)
    lone_out_s: float = 0.0  # a lone request handed to the engine and its answer back to its response (typical)
    out_s: float = 0.0  # the same, now: under load the event loop is busy with other requests
    out_tail_s: float = 0.0  # its recent tail (p90): what a request going deeper than exit 0 plans for

    def as_tuple(self) -> tuple[float, ...]:
        """The fields in order, for the wire (`FrontEnd(*values)` reads them back); `dataclasses.astuple` would
        deep-copy each float, on every request."""
        return (self.lone_intake_s, self.decode_s, self.lone_decode_s, self.read_s, self.lone_out_s, self.out_s,
                self.out_tail_s)  # fmt: skip


def idle_floor_s(profile: LatencyProfile, front: FrontEnd) -> float:
    """The smallest budget an idle server typically meets once it has read a request: its image decoded,
    exit 0 run cold, the hand-over both ways, each typical. Below it no retry helps (422); above it an
    idle server takes the request. The reading itself is left out: it is where a loaded event loop or a
    slow client shows first, and neither is the budget's fault."""
    return front.lone_decode_s + profile.predict(0, 1, "p50", cold=True) + front.lone_out_s


READS_BEFORE_AN_ANSWER = 2  # see service.http.state.ServiceState.reading


def way_out_s(front: FrontEnd, others_in_front: int, alone: bool = False) -> float:
    """How long an answer will take from its exit to its response while `others_in_front` requests are
    still to be read: the event loop reads them before it gets to the answer (a burst read in one go
    is handled one request after another), then the way out of a lone answer; never below the recent
    figure under load unless the request is `alone` on the server."""
    if alone:
        return front.lone_out_s
    # one request is read at a time, and the answers that came meanwhile go out between two reads
    reading = min(others_in_front, READS_BEFORE_AN_ANSWER) * front.read_s
    return max(front.out_s, front.lone_out_s + reading)


def queue_s(profile: LatencyProfile, quantile: str, batches: int, batch_size: int) -> float:
    """How long `batches` full batches of exit 0 queued ahead take, at `quantile`: their typical (p50) times,
    plus their tail once. Their slow spells are independent, so their spreads add as variances do (the
    square root of the number of batches times one batch's excess over its median): adding up each batch's
    tail would predict every batch at its worst at once, and refuse bursts that the server serves in time."""
    if batches <= 0:
        return 0.0
    typical = profile.predict(0, batch_size, "p50")
    excess = profile.predict(0, batch_size, quantile) - typical
    return batches * typical + math.sqrt(batches) * max(0.0, excess)


def check(
    profile: LatencyProfile,
    quantile: str,
    max_batch_size: int,
    budget: Budget,
    received: float,
    now: float,
    ahead: Ahead,
    front: FrontEnd,
) -> None:
    """Raise DeadlineUnmeetableError (422) or BacklogError (503) when the first exit of a request
    received at `received` is predicted late now (see the module's docstring); return otherwise."""
    deadline = budget.deadline
    if deadline is None:
        return
    floor = idle_floor_s(profile, front)
    hand_over = front.lone_decode_s + front.lone_out_s
    if received + floor > deadline:
        raise DeadlineUnmeetableError(
            f"an idle server typically needs {1e3 * floor:.2f} ms for a first answer once it has read the "
            f"request: exit 0 takes {1e3 * profile.predict(0, 1, 'p50', cold=True):.2f} ms after an idle spell, "
            f"and decoding the image and handing it over and back {1e3 * hand_over:.2f} ms"
        )
    if not ahead.any:  # above the idle floor with nothing ahead: served, whatever its own intake took ...
        typical = profile.predict(0, 1, "p50", cold=ahead.idle) + front.decode_s + front.lone_out_s
        if not ahead.crowded or now + typical <= deadline:
            return
        # ... unless other requests handled before it (the rest of a burst, answered or refused by now) took its time
        raise BacklogError(
            f"other requests that came with it or before it were handled first: it has been "
            f"{1e3 * (now - received):.1f} ms since it arrived, and its first exit would typically take "
            f"{1e3 * typical:.1f} ms more"
        )
    full, rest = divmod(ahead.queued, max_batch_size)
    backlog = queue_s(profile, quantile, full, max_batch_size)
    own = profile.predict(0, rest + 1, quantile, cold=ahead.idle) + front.decode_s
    out = way_out_s(front, ahead.others_in_front)
    if now + ahead.running_s + backlog + own + out <= deadline:
        return
    intake, lag = now - received, max(0.0, now - received - front.lone_intake_s)
    causes = []
    if full:
        causes.append(f"{ahead.queued} requests are queued ahead of it, whose first exits take {1e3 * backlog:.1f} ms")
    elif ahead.queued:  # no full batch ahead: they would run in its own batch, which `own` times
        causes.append(f"{ahead.queued} requests are queued ahead of it, in the batch it would join")
    if ahead.running_s > 0:
        causes.append(f"the stage running now needs {1e3 * ahead.running_s:.1f} ms more")
    if ahead.others_in_front:
        causes.append(
            f"the front end is reading {ahead.others_in_front} other requests: this one waited {1e3 * lag:.1f} ms "
            f"longer than a lone request to be read"
        )
    if ahead.others_in_engine:
        causes.append(f"{ahead.others_in_engine} other requests in the engine keep the front end busy")
    raise BacklogError(
        f"{'; '.join(causes)}. It has been {1e3 * intake:.1f} ms since it arrived; its decoding and its own "
        f"first exit need {1e3 * own:.1f} ms, and the answer {1e3 * out:.1f} ms to get out"
    )
