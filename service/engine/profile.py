"""Latency profile: how long stage k and exit head k take at a given batch size on this machine.

Stage and head are kept apart because the engine reads a head only where some request may stop:
a request going on pays for stage k+1 alone, one stopping there for stage k+1 and head k+1.
Samples are kept per part × exit × batch-size bucket in a sliding window: first from a calibration
at start-up (after warm-up), then from the times the engine observes while serving, so the policy
predicts from what the machine does now. Windows age with time as well as with samples: a sample
older than `max_age_s` leaves once newer ones can stand in for it, so a stall is forgotten even when
no traffic replaces it (refused requests add no samples).

Cold and warm passes are kept apart. A batch that starts after the engine sat idle runs much slower
than one that follows another (measured here: 6.5 ms against 3.9 ms for the full path at batch 1,
with any idle gap from 0.5 ms up; docs/performance.md). Sparse traffic is all cold, steady traffic
all warm: one window for both would make either the tail of the other.

Thread-safe: the inference thread writes, the event loop reads. No torch here; `calibrate` takes a
callable that times one stage-by-stage pass.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two below `max_batch_size`, then `max_batch_size` itself: 1, 2, 4, 8, …"""
    buckets, size = [], 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    buckets.append(max_batch_size)
    return buckets


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted, non-empty list."""
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def predictable_quantile(q: float, n: int) -> float:
    """The quantile that `n` samples can estimate: q, but never the maximum of fewer than 1/(1 - q)
    samples (a p99 of 20 calibration runs would be their single slowest, one stall deciding every
    prediction until traffic replaces it). 20 samples give p95, 50 give p98, 100 or more the full p99."""
    return min(q, 1.0 - 1.0 / n) if n > 1 else q


STAGE, HEAD = "stage", "head"
COLD_STAGE, COLD_HEAD = "cold_stage", "cold_head"  # the same parts, timed in a batch that started cold
PARTS = (STAGE, HEAD, COLD_STAGE, COLD_HEAD)
WARM_PARTS = (STAGE, HEAD)
MIN_FRESH = 8  # aging never empties a cell below this many of its newest samples


class LatencyProfile:
    def __init__(
        self,
        num_exits: int,
        buckets: list[int],
        window: int = 256,
        max_age_s: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if num_exits < 1 or not buckets:
            raise ValueError("a profile needs at least one exit and one batch-size bucket")
        self.num_exits = num_exits
        self.buckets = sorted(set(buckets))
        self.window = window
        self.max_age_s = max_age_s  # None: samples leave only when the window is full
        self.clock = clock
        keys = [(part, k, b) for part in PARTS for k in range(num_exits) for b in self.buckets]
        # per cell: samples in arrival order (to drop the oldest) and the same samples kept sorted, so a
        # quantile is an index and an observation costs a binary search, not a sort (the engine
        # observes and predicts a few times per stage)
        self._samples: dict[tuple[str, int, int], deque[tuple[float, float]]] = {key: deque() for key in keys}
        self._sorted: dict[tuple[str, int, int], list[float]] = {key: [] for key in keys}
        # where a prediction for each bucket looks: the bucket itself first, then the nearest ones
        self._nearest = {t: sorted(self.buckets, key=lambda b, t=t: abs(b - t)) for t in self.buckets}
        self._lock = threading.Lock()

    def bucket(self, batch_size: int) -> int:
        """The smallest bucket that holds `batch_size` (the largest bucket beyond it)."""
        for b in self.buckets:
            if batch_size <= b:
                return b
        return self.buckets[-1]

    def observe(
        self, exit_index: int, batch_size: int, stage_s: float, head_s: float | None = None, cold: bool = False
    ) -> None:
        """Record measured seconds of stage `exit_index` and, if it was read, its head, for `batch_size`
        rows; `cold`: in a batch that started after the engine sat idle."""
        self._record(COLD_STAGE if cold else STAGE, exit_index, batch_size, stage_s)
        if head_s is not None:
            self._record(COLD_HEAD if cold else HEAD, exit_index, batch_size, head_s)

    def observe_head(self, exit_index: int, batch_size: int, seconds: float, cold: bool = False) -> None:
        """Record one measured time of exit head `exit_index` on `batch_size` rows."""
        self._record(COLD_HEAD if cold else HEAD, exit_index, batch_size, seconds)

    def _record(self, part: str, exit_index: int, batch_size: int, seconds: float) -> None:
        if not 0 <= exit_index < self.num_exits or not seconds >= 0:
            return
        key = (part, exit_index, self.bucket(batch_size))
        now = self.clock()
        with self._lock:
            samples, ordered = self._samples[key], self._sorted[key]
            if len(samples) >= self.window:
                del ordered[bisect.bisect_left(ordered, samples.popleft()[1])]
            samples.append((now, seconds))
            bisect.insort(ordered, seconds)
            self._age(key, now)

    def _age(self, key: tuple[str, int, int], now: float) -> None:
        """Lock held: drop the samples of a cell older than max_age_s, keeping its MIN_FRESH newest."""
        if self.max_age_s is None:
            return
        samples, ordered, oldest = self._samples[key], self._sorted[key], now - self.max_age_s
        while len(samples) > MIN_FRESH and samples[0][0] < oldest:
            del ordered[bisect.bisect_left(ordered, samples.popleft()[1])]

    def _stats(self, key: tuple[str, int, int]) -> dict[str, float] | None:
        """Quantiles of one cell. Caller holds the lock."""
        ordered = self._sorted[key]
        if not ordered:
            return None
        stats = {name: _quantile(ordered, q) for name, q in QUANTILES.items()}
        stats["n"] = len(ordered)
        return stats

    def _cell(self, part: str, exit_index: int, b: int, now: float) -> list[float]:
        """Lock held: the sorted samples of a cell, aged first."""
        key = (part, exit_index, b)
        self._age(key, now)
        return self._sorted[key]

    def _warm(self, part: str, exit_index: int, batch_size: int, quantile: str, now: float) -> tuple[float, int]:
        """Lock held: (prediction, the bucket it was measured at); an empty bucket borrows the nearest
        measured one, scaled by batch size when that is larger. (0.0, 0) when nothing is measured."""
        target, q = self.bucket(batch_size), QUANTILES[quantile]
        for b in self._nearest[target]:
            ordered = self._cell(part, exit_index, b, now)
            if ordered:
                return _quantile(ordered, predictable_quantile(q, len(ordered))) * max(1.0, target / b), b
        return 0.0, 0

    def _predict(self, part: str, exit_index: int, batch_size: int, quantile: str, cold: bool = False) -> float:
        """A cold prediction is the cold cell's, where a cold batch of that size was timed; otherwise the
        warm prediction plus what going cold added at the nearest size that was (never below warm)."""
        now = self.clock()
        with self._lock:
            warm, _ = self._warm(part, exit_index, batch_size, quantile, now)
            if not cold:
                return warm
            cold_part = COLD_STAGE if part == STAGE else COLD_HEAD
            target, q = self.bucket(batch_size), QUANTILES[quantile]
            for b in self._nearest[target]:
                ordered = self._cell(cold_part, exit_index, b, now)
                if ordered:
                    measured = _quantile(ordered, predictable_quantile(q, len(ordered)))
                    if b == target:
                        return max(warm, measured)
                    warm_there, _ = self._warm(part, exit_index, b, quantile, now)
                    return max(warm, warm + measured - warm_there)
            return warm

    def predict_stage(self, exit_index: int, batch_size: int, quantile: str = "p95", cold: bool = False) -> float:
        """Predicted seconds of stage `exit_index` alone (a request going on past this exit); 0 if unmeasured.
        `cold`: in a batch that starts after the engine sat idle."""
        return self._predict(STAGE, exit_index, batch_size, quantile, cold)

    def predict_head(self, exit_index: int, batch_size: int, quantile: str = "p95", cold: bool = False) -> float:
        """Predicted seconds of exit head `exit_index` on `batch_size` rows; 0 if unmeasured."""
        return self._predict(HEAD, exit_index, batch_size, quantile, cold)

    def predict(self, exit_index: int, batch_size: int, quantile: str = "p95", cold: bool = False) -> float:
        """Predicted seconds of stage `exit_index` + its head (what answering from that exit costs)."""
        return self.predict_stage(exit_index, batch_size, quantile, cold) + self.predict_head(
            exit_index, batch_size, quantile, cold
        )

    def predict_path(self, exit_index: int, batch_size: int, quantile: str = "p95", cold: bool = False) -> float:
        """Predicted seconds from the image to an answer at exit `exit_index`: stages 0..k and head k."""
        stages = sum(self.predict_stage(k, batch_size, quantile, cold) for k in range(exit_index + 1))
        return stages + self.predict_head(exit_index, batch_size, quantile, cold)

    def sample_count(self, exit_index: int, batch_size: int, part: str = STAGE) -> int:
        """How many samples the window holds for `part` ("stage", "head", "cold_stage", "cold_head") of an
        exit at a batch size."""
        with self._lock:
            return len(self._cell(part, exit_index, self.bucket(batch_size), self.clock()))

    @property
    def calibrated(self) -> bool:
        with self._lock:
            first = self.buckets[0]
            return all(self._samples[(part, k, first)] for part in WARM_PARTS for k in range(self.num_exits))

    def snapshot(self, cold: bool = False) -> list[dict[str, Any]]:
        """Per exit: {batch size: {p50_ms, p95_ms, p99_ms, samples}} of stage + head, for `/v1/model`
        (`cold`: of the batches that started cold).

        The quantiles are the sums of the stage's and the head's, as the policy predicts them.
        """
        out = []
        stage_part, head_part = (COLD_STAGE, COLD_HEAD) if cold else (STAGE, HEAD)
        now = self.clock()
        with self._lock:
            for k in range(self.num_exits):
                per_bucket = {}
                for b in self.buckets:
                    self._cell(stage_part, k, b, now)
                    self._cell(head_part, k, b, now)
                    stage, head = self._stats((stage_part, k, b)), self._stats((head_part, k, b))
                    if stage is None and head is None:
                        continue
                    parts = [s for s in (stage, head) if s is not None]
                    per_bucket[str(b)] = {
                        "p50_ms": round(sum(s["p50"] for s in parts) * 1e3, 4),
                        "p95_ms": round(sum(s["p95"] for s in parts) * 1e3, 4),
                        "p99_ms": round(sum(s["p99"] for s in parts) * 1e3, 4),
                        "samples": int(min(s["n"] for s in parts)),
                    }
                out.append(per_bucket)
        return out

    def export(self) -> list[tuple[str, int, int, float, float]]:
        """Every sample as (part, exit, bucket, when, seconds), oldest first per cell: what `restore` takes
        (a front end that joins a running engine starts its mirror from this; the clocks are the same)."""
        with self._lock:
            return [(*key, when, seconds) for key, samples in self._samples.items() for when, seconds in samples]

    def restore(self, records: list[tuple[str, int, int, float, float]]) -> None:
        """Replace every sample with `records` (from `export`); ones for cells this profile lacks are ignored."""
        self.clear()
        with self._lock:
            for part, exit_index, bucket, when, seconds in records:
                key = (part, int(exit_index), int(bucket))
                if key in self._samples:
                    self._samples[key].append((float(when), float(seconds)))
                    bisect.insort(self._sorted[key], float(seconds))

    def clear(self) -> None:
        """Forget every sample (the process engine's mirror, before a restarted child's calibration refills it)."""
        with self._lock:
            for key in self._samples:
                self._samples[key].clear()
                self._sorted[key].clear()


def calibrate(
    profile: LatencyProfile,
    time_pass: Callable[[int], list[tuple[float, float]]],
    warmup_runs: int = 3,
    runs: int = 20,
    idle: Callable[[float], Any] | None = None,
    cold_gap_s: float = 0.01,
) -> None:
    """Fill `profile` by timing full stage-by-stage passes at every bucket.

    `time_pass(batch_size)` runs stages 0..K-1 once, reading every exit head, and returns (stage
    seconds, head seconds) per exit, device synchronised. Warm-up passes are discarded: first calls
    pay for allocation and kernels. `idle(seconds)` (e.g. time.sleep), when given, times `runs` more
    passes at batch 1, each after that long idle, into the cold cells (what a lone request that
    follows a quiet spell costs).
    """
    for batch_size in profile.buckets:
        for _ in range(warmup_runs):
            time_pass(batch_size)
        for _ in range(runs):
            for k, (stage_s, head_s) in enumerate(time_pass(batch_size)):
                profile.observe(k, batch_size, stage_s, head_s)
    if idle is not None:
        for _ in range(runs):
            idle(cold_gap_s)
            for k, (stage_s, head_s) in enumerate(time_pass(1)):
                profile.observe(k, 1, stage_s, head_s, True)
