"""The oracle: for each budget, the accuracy of the best single exit whose measured latency fits.

An exit fits a budget when its in-process batch-1 decode+forward latency (at p99, because the
server is asked to be on time almost always) plus the server's measured fixed overhead is within
the budget. The best fitting exit is the most accurate one over all the benchmark's images; its
accuracy is then read on exactly the images a measurement point sent, so served and oracle
accuracy are compared pairwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

QUANTILE = "p99"


def _most_accurate(exits: Sequence[dict[str, Any]], fits: Callable[[dict[str, Any]], bool]) -> int | None:
    """Index of the most accurate exit that `fits` (the shallower one on a tie); None when none does."""
    fitting = [e for e in exits if fits(e)]
    return max(fitting, key=lambda e: (e["accuracy"], -e["exit"]))["exit"] if fitting else None


def oracle_exit(budget_ms: float, exits: Sequence[dict[str, Any]], overhead_ms: float) -> int | None:
    """Index of the most accurate exit that fits `budget_ms`; None when not even exit 0 fits."""
    return _most_accurate(exits, lambda e: e["batch1_ms"][QUANTILE] + overhead_ms <= budget_ms)


def fixed_exit_fit(budget_ms: float, fixed: Sequence[dict[str, Any]], exits: Sequence[dict[str, Any]]) -> int | None:
    """The same choice made from the server itself: `fixed[k]` is our server held to exit k (a compute
    budget of exactly that exit's MFLOPs) at concurrency 1, measured in the same phase of the run as the
    budget sweep. An exit fits when that point's server-side p99 is within the budget. None when none fits."""
    p99 = {f["exit"]: f["server_ms"][QUANTILE] for f in fixed}
    return _most_accurate(exits, lambda e: (p99.get(e["exit"]) or math.inf) <= budget_ms)


def accuracy_on(exit_index: int, sample_indices: Iterable[int], correct: Sequence[Sequence[bool]]) -> float | None:
    """Accuracy of one exit on the given samples (with repeats, as they were sent)."""
    hits = [correct[i][exit_index] for i in sample_indices]
    return sum(hits) / len(hits) if hits else None
