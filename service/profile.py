"""Latency profile: how long stage k + exit head k takes at a given batch size on this machine.

Samples are kept per exit × batch-size bucket in a sliding window: first from a calibration at
start-up (after warm-up), then from the stage times the engine observes while serving, so the
policy predicts from what the machine does now. Thread-safe: the inference thread writes, the
event loop reads. No torch here; `calibrate` takes a callable that times one stage-by-stage pass.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

QUANTILES = {"p50": 0.50, "p95": 0.95}


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


class LatencyProfile:
    def __init__(self, num_exits: int, buckets: list[int], window: int = 256) -> None:
        if num_exits < 1 or not buckets:
            raise ValueError("a profile needs at least one exit and one batch-size bucket")
        self.num_exits = num_exits
        self.buckets = sorted(set(buckets))
        self.window = window
        self._samples = {(k, b): deque(maxlen=window) for k in range(num_exits) for b in self.buckets}
        self._cache: dict[tuple[int, int], dict[str, float]] = {}
        self._lock = threading.Lock()

    def bucket(self, batch_size: int) -> int:
        """The smallest bucket that holds `batch_size` (the largest bucket beyond it)."""
        for b in self.buckets:
            if batch_size <= b:
                return b
        return self.buckets[-1]

    def observe(self, exit_index: int, batch_size: int, seconds: float) -> None:
        """Record one measured time of stage `exit_index` + its head for a batch of `batch_size`."""
        if not 0 <= exit_index < self.num_exits or not seconds >= 0:
            return
        key = (exit_index, self.bucket(batch_size))
        with self._lock:
            self._samples[key].append(seconds)
            self._cache.pop(key, None)

    def _stats(self, key: tuple[int, int]) -> dict[str, float] | None:
        """Quantiles of one cell, cached until it changes. Caller holds the lock."""
        if key in self._cache:
            return self._cache[key]
        samples = self._samples[key]
        if not samples:
            return None
        ordered = sorted(samples)
        stats = {name: _quantile(ordered, q) for name, q in QUANTILES.items()}
        stats["n"] = len(ordered)
        self._cache[key] = stats
        return stats

    def predict(self, exit_index: int, batch_size: int, quantile: str = "p95") -> float:
        """Predicted seconds of stage `exit_index` + head at `batch_size`; 0 if nothing measured.

        An empty bucket borrows the nearest measured one, scaled by batch size when that is larger.
        """
        target = self.bucket(batch_size)
        with self._lock:
            stats = self._stats((exit_index, target))
            if stats is not None:
                return stats[quantile]
            for b in sorted(self.buckets, key=lambda b: abs(b - target)):
                stats = self._stats((exit_index, b))
                if stats is not None:
                    return stats[quantile] * max(1.0, target / b)
        return 0.0

    def predict_path(self, exit_index: int, batch_size: int, quantile: str = "p95") -> float:
        """Predicted seconds from the image to exit `exit_index` (stages and heads 0..k)."""
        return sum(self.predict(k, batch_size, quantile) for k in range(exit_index + 1))

    @property
    def calibrated(self) -> bool:
        with self._lock:
            return all(self._samples[(k, self.buckets[0])] for k in range(self.num_exits))

    def snapshot(self) -> list[dict[str, Any]]:
        """Per exit: {batch size: {p50_ms, p95_ms, samples}} for `/v1/model`."""
        out = []
        with self._lock:
            for k in range(self.num_exits):
                per_bucket = {}
                for b in self.buckets:
                    stats = self._stats((k, b))
                    if stats is not None:
                        per_bucket[str(b)] = {
                            "p50_ms": round(stats["p50"] * 1e3, 4),
                            "p95_ms": round(stats["p95"] * 1e3, 4),
                            "samples": int(stats["n"]),
                        }
                out.append(per_bucket)
        return out


def calibrate(
    profile: LatencyProfile, time_pass: Callable[[int], list[float]], warmup_runs: int = 3, runs: int = 20
) -> None:
    """Fill `profile` by timing full stage-by-stage passes at every bucket.

    `time_pass(batch_size)` runs stages and heads 0..K-1 once and returns the seconds of each (stage k +
    head k, device synchronised). Warm-up passes are discarded: first calls pay for allocation and kernels.
    """
    for batch_size in profile.buckets:
        for _ in range(warmup_runs):
            time_pass(batch_size)
        for _ in range(runs):
            for k, seconds in enumerate(time_pass(batch_size)):
                profile.observe(k, batch_size, seconds)
