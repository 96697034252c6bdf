"""The live accuracy guardrail: a share of early answers is re-run to the final exit while the engine is
idle, and whether the two agree is counted per exit (docs/guardrail.md).

Early exits trade accuracy for time; a shift in the incoming data can make that trade much worse without
any error or latency metric moving. The final exit is the best answer the model has, so an exit's agreement
with it, compared with the agreement measured when the checkpoint was made (training.agreement, the
`agreement` field of elastic.json), shows when the early exits stop being worth their saving.

The engine offers every answer it makes (`offer`, inference thread); a random `share` of the early ones
keeps its input tensor in a small pool (the oldest dropped when full, so memory stays bounded). While the
engine is idle it calls `step`, which runs one stage of the current re-run at batch 1: a request that
arrives meanwhile waits for that stage at most. A re-run interrupted by requests resumes at its next stage
the next time the engine is idle. No torch here: the model is reached through the runner's hooks.
"""

from __future__ import annotations

import logging
import random
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic_anytime.service.engine.policy import Budget, Reason

log = logging.getLogger(__name__)

POOL_SIZE = 32  # samples waiting for a re-run; beyond it the oldest is dropped
# idle this long before a re-run starts: the requests of a burst that are still coming get there first
IDLE_BEFORE_RERUN_S = 0.005


@dataclass
class Sample:
    """An early answer kept for a re-run."""

    tensor: Any  # the request's input, as the engine ran it
    exit_index: int
    class_id: int
    target: float | None  # the confidence target that stopped it; None: a budget stopped it
    runner: weakref.ref  # the model that answered: after a hot reload its samples are dropped


@dataclass
class Verdict:
    """One finished re-run: did the early exit agree with the final one, and how often it should."""

    exit_index: int
    agree: bool
    expected: float | None  # the checkpoint's calibrated agreement for a sample drawn this way; None: no baseline


@dataclass
class _Rerun:
    sample: Sample
    stage: int = 0  # the next stage to run
    features: Any = None


def expected_agreement(table: Mapping[str, Any] | None, exit_index: int, target: float | None) -> float | None:
    """The calibrated agreement of exit `exit_index` for a sample stopped by a budget (`target` None: over all
    images) or by the confidence target `target` (the row of the highest tabulated threshold not above it that
    rests on enough images: the more lenient one when the target lies between two; all images when there is
    none). None without a baseline."""
    if table is None:
        return None
    entry = table["exits"][exit_index]
    if target is not None:
        rows = [row for t, row in zip(table["thresholds"], entry["confident"], strict=True) if t <= target]
        rows = [row for row in rows if row is not None]
        if rows:
            return float(rows[-1])
    return float(entry["all"])


class Guardrail:
    """Samples early answers and re-runs them to the final exit, one stage per `step` (inference thread only)."""

    def __init__(self, share: float, pool_size: int = POOL_SIZE, seed: int | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share = share
        self.idle_s = IDLE_BEFORE_RERUN_S
        self._pool: deque[Sample] = deque(maxlen=pool_size)
        self._random = random.Random(seed)
        self._current: _Rerun | None = None
        self.dropped = 0  # samples pushed out of a full pool before their re-run

    @property
    def pending(self) -> bool:
        """Whether a re-run is under way or waiting."""
        return self._current is not None or bool(self._pool)

    def offer(self, runner: Any, tensor: Any, exit_index: int, class_id: int, reason: Reason, budget: Budget) -> None:
        """An answer was made at `exit_index`: keep a random `share` of the early ones for a re-run.

        An answer stopped by the time or compute budget of a request that also set a confidence target is not
        kept: it is one whose confidence stayed below that target, a harder image than the baseline's."""
        if exit_index >= runner.num_exits - 1:
            return
        if reason is Reason.CONFIDENT:
            target = budget.min_confidence
        elif budget.min_confidence is None:
            target = None
        else:
            return
        if self._random.random() >= self.share:
            return
        if len(self._pool) == self._pool.maxlen:
            self.dropped += 1
        self._pool.append(Sample(tensor, exit_index, int(class_id), target, weakref.ref(runner)))

    def step(self, runner: Any) -> Verdict | None:
        """Run the next stage of the current re-run on `runner` (starting the oldest sample when none is under
        way); the verdict once its final exit has been read, else None. A model failure drops the sample."""
        rerun = self._current
        if rerun is None or rerun.sample.runner() is not runner:
            rerun = self._current = self._next(runner)
            if rerun is None:
                return None
        try:
            if rerun.stage == 0:
                rerun.features = runner.batch([rerun.sample.tensor])
            rerun.features = runner.stage(rerun.stage, rerun.features)
            if rerun.stage + 1 < runner.num_exits:
                rerun.stage += 1
                return None
            _, _, final_class = runner.read_exit(rerun.stage, rerun.features)
        except Exception:  # the guardrail must never take the inference thread down
            log.warning("a guardrail re-run failed; its sample is dropped", exc_info=True)
            self._current = None
            return None
        self._current = None
        sample = rerun.sample
        table = runner.meta.get("agreement")
        expected = expected_agreement(table, sample.exit_index, sample.target)
        return Verdict(sample.exit_index, int(final_class[0]) == sample.class_id, expected)

    def _next(self, runner: Any) -> _Rerun | None:
        """The oldest sample answered by `runner`; those of a model since replaced are dropped."""
        while self._pool:
            sample = self._pool.popleft()
            if sample.runner() is runner:
                return _Rerun(sample)
        return None


def make_guardrail(share: float) -> Guardrail | None:
    """The guardrail for ELASTIC_GUARDRAIL_SHARE; None when it is 0 (off)."""
    return Guardrail(share) if share > 0 else None
