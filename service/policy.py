"""The budget policy: after exit k, does a request go on to stage k+1?

Pure on purpose (no torch, no FastAPI, no clock of its own): the engine passes the current time, the
profile's prediction and the exit costs, so tests can drive it with plain numbers.

A request continues to stage k+1 only if all of these hold:
- exit k is not the final exit;
- its confidence at exit k is below its `min_confidence` (if it gave one);
- the cumulative MFLOPs of exit k+1 fit its `max_mflops` (if it gave one);
- `now + predicted(stage k+1 + head k+1) + margin <= deadline` (if it has a deadline).
Exit 0 is never subject to the policy: it always runs, so every accepted request gets an answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Reason(str, Enum):
    """Why a request stopped where it did (or `CONTINUE`)."""

    CONTINUE = "continue"
    FINAL = "final"
    CONFIDENT = "confident"
    COMPUTE = "compute"
    DEADLINE = "deadline"


@dataclass(frozen=True)
class Budget:
    """What one request allows. Times are seconds on the engine's monotonic clock."""

    deadline: float | None = None  # receive time + budget; None: no time limit
    max_mflops: float | None = None
    min_confidence: float | None = None

    @property
    def urgency(self) -> float:
        """EDF sort key: earlier deadline first, no deadline last."""
        return math.inf if self.deadline is None else self.deadline


def decide(
    exit_index: int,
    num_exits: int,
    confidence: float,
    budget: Budget,
    now: float,
    predicted_next_s: float,
    next_mflops: float,
    margin_s: float,
) -> Reason:
    """Decision after exit `exit_index`: `Reason.CONTINUE` or why the request stops here.

    `predicted_next_s` is the predicted time of stage k+1 plus head k+1 at the current batch size;
    `next_mflops` the cumulative MFLOPs a request has spent once exit k+1 has run.
    """
    if exit_index >= num_exits - 1:
        return Reason.FINAL
    if budget.min_confidence is not None and confidence >= budget.min_confidence:
        return Reason.CONFIDENT
    if budget.max_mflops is not None and next_mflops > budget.max_mflops:
        return Reason.COMPUTE
    if budget.deadline is not None and now + predicted_next_s + margin_s > budget.deadline:
        return Reason.DEADLINE
    return Reason.CONTINUE


def first_exit_fits(budget: Budget, now: float, predicted_first_s: float, margin_s: float) -> bool:
    """Whether exit 0, started now, can still answer in time (always true without a deadline)."""
    return budget.deadline is None or now + predicted_first_s + margin_s <= budget.deadline


def affordable_wait(budget: Budget, now: float, stage_s: list[float], margin_s: float) -> float:
    """How long a batch holding this request may still wait to start without costing it an exit.

    `stage_s[k]` is the predicted time of stage k + head k. The request, started now, would reach the
    deepest exit whose path fits before its deadline; the slack beyond that path is what it can spare.
    A request that cannot make even exit 0 spares nothing; one without a deadline spares everything.
    """
    if budget.deadline is None:
        return math.inf
    left = budget.deadline - now - margin_s
    path = 0.0
    for seconds in stage_s:
        if path + seconds > left:
            break
        path += seconds
    if path == 0.0 and stage_s:
        return 0.0
    return max(0.0, left - path)
