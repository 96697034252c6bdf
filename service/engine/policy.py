"""The budget policy: after exit k, does a request go on to stage k+1?

Pure on purpose (no torch, no FastAPI, no clock of its own): the engine passes the current time, the
profile's prediction and the exit costs, so tests can drive it with plain numbers.

A request continues to stage k+1 only if all of these hold:
- exit k is not the final exit;
- its confidence at exit k is below its `min_confidence` (if it gave one);
- the MFLOPs it will have spent once exit k+1 answers fit its `max_mflops` (if it gave one);
- `now + predicted(stage k+1 + head k+1) + margin <= deadline` (if it has a deadline).
Exit 0 is never subject to the policy: it always runs, so every accepted request gets an answer.

The engine decides once before it reads exit k's head (confidence not known yet) and reads the
head only for the requests that may stop there (`needs_exit`); a request that goes on anyway would
throw that head's answer away, unless it is streamed (POST /v1/classify/stream: every exit's answer
goes out). Those it read are decided again with their confidence.

Requests waiting in the queue come first: a batch does not go deeper when that step would cost the
most urgent waiting request its first exit (`queue_allows`); its requests then stop with reason
`deadline` (a deadline, if not their own, is what stopped them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    confidence: float | None,
    budget: Budget,
    now: float,
    predicted_next_s: float,
    next_mflops: float,
    margin_s: float,
) -> Reason:
    """Decision at exit `exit_index`: `Reason.CONTINUE` or why the request stops here.

    `predicted_next_s` is the predicted time until exit k+1 could answer: stage k+1 plus head k+1 at
    the batch size that goes on (plus head k when it is still to be read for others);
    `next_mflops` the MFLOPs the request has spent once exit k+1 has answered. `confidence` is None
    before head k is read: everything but the confidence target is decided then.
    """
    if exit_index >= num_exits - 1:
        return Reason.FINAL
    if confidence is not None and budget.min_confidence is not None and confidence >= budget.min_confidence:
        return Reason.CONFIDENT
    if budget.max_mflops is not None and next_mflops > budget.max_mflops:
        return Reason.COMPUTE
    if budget.deadline is not None and now + predicted_next_s + margin_s > budget.deadline:
        return Reason.DEADLINE
    return Reason.CONTINUE


def needs_exit(reason: Reason, budget: Budget, streamed: bool = False) -> bool:
    """Whether exit k's head must be read for a request decided `reason` before reading it: it stops
    here, its confidence there may stop it, or it is streamed (its client gets every exit's answer).
    A request that only goes on needs no answer here."""
    return streamed or reason is not Reason.CONTINUE or budget.min_confidence is not None


def queue_allows(
    now: float, step_s: float, waiting_deadline: float | None, waiting_first_s: float, margin_s: float
) -> bool:
    """Whether a running batch may spend `step_s` more on a deeper exit while requests wait behind it.

    Going deeper is optional work; the first exit of a waiting request is not. The batch may go on
    unless the most urgent waiting request (`waiting_deadline`, whose batch needs `waiting_first_s`
    for its first exit) could still answer in time if started now but no longer after the step.
    """
    if waiting_deadline is None:
        return True
    first_done = now + waiting_first_s + margin_s
    return first_done + step_s <= waiting_deadline or first_done > waiting_deadline


def first_exit_fits(budget: Budget, now: float, predicted_first_s: float, margin_s: float) -> bool:
    """Whether exit 0, started now, can still answer in time (always true without a deadline)."""
    return budget.deadline is None or now + predicted_first_s + margin_s <= budget.deadline


def affordable_wait(
    budget: Budget, now: float, stage_s: Sequence[float], head_s: Sequence[float], margin_s: float
) -> float:
    """How long a batch holding this request may still wait to start without costing it an exit.

    `stage_s[k]` and `head_s[k]` are the predicted times of stage k and of head k. Answering at exit
    k takes stages 0..k and head k. The request, started now, goes on while the next exit fits before
    its deadline; the slack beyond the path to the exit it stops at is what it can spare. A request
    that cannot make even exit 0 spares nothing; one without a deadline spares everything.
    """
    if budget.deadline is None:
        return math.inf
    left = budget.deadline - now - margin_s
    reached = None
    stages = 0.0
    for stage, head in zip(stage_s, head_s, strict=True):
        stages += stage
        if stages + head > left:
            break
        reached = stages + head
    if reached is None:
        return 0.0
    return max(0.0, left - reached)
