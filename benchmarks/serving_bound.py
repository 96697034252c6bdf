"""The lower bound that our server is held to: in-process decode + forward with the serving runner
itself (batch norms folded, the server's precision and memory layout, the server's image decoding),
per exit, batch 1 and batched, and per-exit accuracy with that arithmetic (the oracle's input).

`benchmarks.inprocess` measures the plain checkpoint in float32, as a generic server (the LitServe
peer) runs it; comparing our server with that would credit the runner's bfloat16 and folding to
the HTTP path. Measured against this one, the ratio is the cost of serving alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.stats import exit_timing
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.http.imaging import decode_image
from elastic_anytime.service.settings import Settings

log = logging.getLogger(__name__)


def serving_pass(runner: ModelRunner, tensors: list[np.ndarray], k: int) -> list[int]:
    """What the engine does for a batch that stops at exit k: copy, stages 0..k, head k. Class ids."""
    features = runner.batch(tensors)
    for index in range(k + 1):
        features = runner.stage(index, features)
    return runner.read_exit(k, features)[2]


def make_decoder(runner: ModelRunner) -> Callable[[bytes], np.ndarray]:
    """Image bytes → the model's input, as the server's `prepare` does it (its decoder and limits)."""
    max_pixels = Settings.from_env({}).max_image_pixels

    def decode(data: bytes) -> np.ndarray:
        image = decode_image(data, max_pixels, channels=runner.channels, min_side=runner.min_side)
        return runner.preprocess(image)

    return decode


@torch.inference_mode()
def correctness(runner: ModelRunner, samples: Sequence[Sample], batch_size: int = 64) -> list[list[bool]]:
    """correct[i][k]: whether exit k of the serving runner classifies sample i right."""
    decode = make_decoder(runner)
    rows: list[list[bool]] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        features = runner.batch([decode(s.data) for s in chunk])
        hits = []
        for k in range(runner.num_exits):
            features = runner.stage(k, features)
            class_ids = runner.read_exit(k, features)[2]
            hits.append([c == s.label for c, s in zip(class_ids, chunk, strict=True)])
        rows.extend(list(row) for row in zip(*hits, strict=True))
    return rows


@torch.inference_mode()
def latency(runner: ModelRunner, samples: Sequence[Sample], batch_size: int, warmup: int = 5) -> list[dict[str, Any]]:
    """Per exit: decode + serving pass at batch 1 (percentiles) and batched (per-image cost, throughput)."""
    decode = make_decoder(runner)
    results = []
    for k in range(runner.num_exits):
        for s in samples[:warmup]:
            serving_pass(runner, [decode(s.data)], k)
        single = []
        for s in samples:
            start = time.perf_counter()
            serving_pass(runner, [decode(s.data)], k)
            single.append(1000 * (time.perf_counter() - start))
        batched, images = [], 0
        for first in range(0, len(samples) - batch_size + 1, batch_size):
            chunk = samples[first : first + batch_size]
            start = time.perf_counter()
            serving_pass(runner, [decode(s.data) for s in chunk], k)
            batched.append(1000 * (time.perf_counter() - start))
            images += len(chunk)
        results.append(exit_timing(k, single, batch_size, batched, images))
        log.info("serving runner exit %d: batch-1 p50 %.2f ms", k, results[-1]["batch1_ms"]["p50"])
    return results


def measure(
    runner: ModelRunner, accuracy_samples: Sequence[Sample], timing_samples: Sequence[Sample], batch_size: int
) -> dict[str, Any]:
    """Latency and accuracy per exit of the serving runner; `correct` is per sample × exit (for the oracle)."""
    correct = correctness(runner, accuracy_samples)
    timing = latency(runner, timing_samples, batch_size)
    exits = []
    for k, row in enumerate(timing):
        accuracy = sum(r[k] for r in correct) / len(correct) if correct else None
        exits.append(dict(row, name=runner.meta["exits"][k]["name"], accuracy=accuracy))
    return {"precision": runner.precision, "channels_last": runner.channels_last, "exits": exits, "correct": correct}
