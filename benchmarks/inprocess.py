"""What the hardware does without a server: in-process decode + forward of the checkpoint at each
exit (batch 1 and batched), and per-exit accuracy over the same images (the oracle's input).

On CUDA the model sits on the GPU, each decoded batch is copied there inside the timed region, and
every timed region ends with `torch.cuda.synchronize()` (kernels run asynchronously: without it the
clock would stop before the GPU has finished)."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from elastic_anytime.benchmarks import serving_bound
from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.stats import exit_timing, percentiles
from elastic_anytime.models.checkpoint import Checkpoint, load_checkpoint
from elastic_anytime.models.transforms import eval_transform
from elastic_anytime.service.engine.runner import ModelRunner

log = logging.getLogger(__name__)


def make_decoder(checkpoint: Checkpoint) -> Callable[[bytes], torch.Tensor]:
    """bytes → normalised (C, H, W) tensor, the same preprocessing as evaluation."""
    meta = checkpoint.meta
    transform = eval_transform(meta["input_size"], meta["mean"], meta["std"])

    def decode(data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as image:
            return transform(image.convert("RGB"))

    return decode


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, where every op has finished on return)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_device(checkpoint: Checkpoint) -> torch.device:
    return next(checkpoint.model.parameters()).device


@torch.inference_mode()
def exit_correctness(checkpoint: Checkpoint, samples: Sequence[Sample], batch_size: int = 64) -> list[list[bool]]:
    """correct[i][k]: whether exit k classifies sample i right (one full forward gives all exits)."""
    decode = make_decoder(checkpoint)
    model = checkpoint.model
    device = model_device(checkpoint)
    rows: list[list[bool]] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        x = torch.stack([decode(s.data) for s in chunk]).to(device)
        labels = torch.tensor([s.label for s in chunk])
        hits = torch.stack([logits.argmax(1).cpu() == labels for logits in model(x)], dim=1)
        rows.extend(hits.tolist())
    return rows


@torch.inference_mode()
def exit_latency(
    checkpoint: Checkpoint, samples: Sequence[Sample], batch_size: int, warmup: int = 5
) -> list[dict[str, Any]]:
    """Per exit: batch-1 decode+forward latency percentiles, and batched per-image cost and throughput."""
    decode = make_decoder(checkpoint)
    model = checkpoint.model
    device = model_device(checkpoint)
    results = []
    for k in range(model.num_exits):
        for s in samples[:warmup]:
            model.forward_until(decode(s.data).unsqueeze(0).to(device), k)
        synchronize(device)
        single = []
        for s in samples:
            start = time.perf_counter()
            model.forward_until(decode(s.data).unsqueeze(0).to(device), k).argmax(1)
            synchronize(device)
            single.append(1000 * (time.perf_counter() - start))
        batched = []
        images = 0
        for start_index in range(0, len(samples) - batch_size + 1, batch_size):
            chunk = samples[start_index : start_index + batch_size]
            start = time.perf_counter()
            x = torch.stack([decode(s.data) for s in chunk]).to(device)
            model.forward_until(x, k).argmax(1)
            synchronize(device)
            batched.append(1000 * (time.perf_counter() - start))
            images += len(chunk)
        results.append(exit_timing(k, single, batch_size, batched, images))
        log.info("in-process exit %d: batch-1 p50 %.2f ms", k, results[-1]["batch1_ms"]["p50"])
    return results


@torch.inference_mode()
def decode_latency(checkpoint: Checkpoint, samples: Sequence[Sample]) -> dict[str, float | None]:
    decode = make_decoder(checkpoint)
    times = []
    for s in samples:
        start = time.perf_counter()
        decode(s.data)
        times.append(1000 * (time.perf_counter() - start))
    return percentiles(times)


def measure(
    checkpoint_dir: str | Path,
    accuracy_samples: Sequence[Sample],
    timing_samples: Sequence[Sample],
    batch_size: int,
    threads: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The lower bound and the per-exit accuracy on `device`, with torch limited to the server's thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        checkpoint = load_checkpoint(checkpoint_dir, device)
        correct = exit_correctness(checkpoint, accuracy_samples)
        latency = exit_latency(checkpoint, timing_samples, batch_size)
        decode = decode_latency(checkpoint, timing_samples)
        runner = ModelRunner(checkpoint, model_device(checkpoint), precision="auto")  # folds a copy
        serving = serving_bound.measure(runner, accuracy_samples, timing_samples, batch_size)
    finally:
        torch.set_num_threads(previous)
    accuracy = [sum(row[k] for row in correct) / len(correct) for k in range(checkpoint.model.num_exits)]
    exits = [
        dict(lat, name=e["name"], mflops=e["mflops"], accuracy=acc)
        for lat, e, acc in zip(latency, checkpoint.meta["exits"], accuracy, strict=True)
    ]
    return {
        "device": str(model_device(checkpoint)),
        "threads": threads,
        "images_accuracy": len(accuracy_samples),
        "images_timing": len(timing_samples),
        "decode_ms": decode,
        "exits": exits,
        "correct": correct,  # per sample × exit; the suite uses it and drops it before writing JSON
        "serving": serving,  # the same with the serving runner: what our server is held to
    }
