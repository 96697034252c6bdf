"""Per-exit latency of the serving runner in-process, as the server runs it (batch norms folded, the
server's precision and memory layout), at several batch sizes and precisions, on any device:

    python -m elastic_anytime.benchmarks.runner_latency --device cuda --batches 1,8,32,128 --precisions fp32,bf16 \\
        --data .gpudata --out latency.json

Per (precision, batch, exit k) two numbers, each the distribution over `--reps` timed runs after
`--warmup` untimed ones, on real test images (a different slice of them each run):
- `serving_ms`: what a batch whose requests all stop at exit k costs the engine: stack the preprocessed
  CPU tensors and copy them to the device (`runner.batch`), stages 0..k (each ends synchronised, as in
  the engine), exit head k, probabilities back on the CPU (`runner.read_exit`). No HTTP, no decode.
- `model_ms`: `forward_until(x, k)` on a batch already on the device, synchronised once at the end:
  the compute alone, without the per-stage synchronisation and copies the engine adds.
Plus, per (precision, batch), the stage and head times of a calibration pass (`runner.time_pass`),
the numbers the server's latency profile starts from.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from elastic_anytime.benchmarks import machine
from elastic_anytime.benchmarks.dataset import load_samples
from elastic_anytime.benchmarks.inprocess import synchronize
from elastic_anytime.benchmarks.serving_bound import serving_pass
from elastic_anytime.benchmarks.stats import percentiles
from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.runner import ModelRunner, resolve_device

log = logging.getLogger(__name__)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def image_pool(runner: ModelRunner, data: Path | None, count: int) -> list[torch.Tensor]:
    """Preprocessed CPU tensors of `count` test images (random pixels when there is no data folder)."""
    if data is None:
        return list(torch.randn(count, *runner.input_size))
    pool = []
    for sample in load_samples(data, list(runner.classes), count):
        with Image.open(io.BytesIO(sample.data)) as image:
            pool.append(runner.preprocess(image.convert("RGB")))
    return pool


def _batches(pool: list[torch.Tensor], batch: int, runs: int) -> list[list[torch.Tensor]]:
    """`runs` batches cycling through the pool, so consecutive runs see different images."""
    out, start = [], 0
    for _ in range(runs):
        out.append([pool[(start + i) % len(pool)] for i in range(batch)])
        start = (start + batch) % len(pool)
    return out


@torch.inference_mode()
def measure_exit(
    runner: ModelRunner, pool: list[torch.Tensor], batch: int, k: int, warmup: int, reps: int
) -> dict[str, Any]:
    batches = _batches(pool, batch, warmup + reps)
    for tensors in batches[:warmup]:
        serving_pass(runner, tensors, k)
    serving = []
    for tensors in batches[warmup:]:
        start = time.perf_counter()
        serving_pass(runner, tensors, k)
        serving.append(1000 * (time.perf_counter() - start))
    on_device = [runner.batch(tensors) for tensors in batches[: min(len(batches), 8)]]
    for x in on_device:
        runner.model.forward_until(x, k)
    synchronize(runner.device)
    model = []
    for i in range(reps):
        x = on_device[i % len(on_device)]
        start = time.perf_counter()
        runner.model.forward_until(x, k)
        synchronize(runner.device)
        model.append(1000 * (time.perf_counter() - start))
    p50 = percentiles(serving)["p50"] or 0.0
    return {
        "exit": k,
        "batch": batch,
        "serving_ms": percentiles(serving),
        "model_ms": percentiles(model),
        "serving_images_per_s": 1000 * batch / p50 if p50 else None,
    }


def measure(
    checkpoint_dir: Path,
    device: torch.device,
    precisions: list[str],
    batch_sizes: list[int],
    data: Path | None,
    warmup: int,
    reps: int,
) -> dict[str, Any]:
    checkpoint = load_checkpoint(checkpoint_dir, device)
    results: dict[str, Any] = {"device": str(device), "checkpoint": str(checkpoint_dir), "runs": [], "calibration": []}
    pool: list[torch.Tensor] | None = None
    for precision in precisions:
        runner = ModelRunner(checkpoint, device, precision=precision)
        norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in runner.model.modules())
        log.info(
            "%s: %s, channels_last %s, %d batch norms left unfolded", precision, device, runner.channels_last, norms
        )
        pool = pool or image_pool(runner, data, max(batch_sizes) * 4)
        for batch in batch_sizes:
            for k in range(runner.num_exits):
                row = {"precision": runner.precision, **measure_exit(runner, pool, batch, k, warmup, reps)}
                results["runs"].append(row)
                log.info(
                    "%s batch %3d exit %d: serving p50 %.3f ms, model p50 %.3f ms",
                    *(runner.precision, batch, k, row["serving_ms"]["p50"], row["model_ms"]["p50"]),
                )
            passes = [runner.time_pass(batch) for _ in range(max(3, reps // 4))]
            results["calibration"].append(
                {
                    "precision": runner.precision,
                    "batch": batch,
                    "stage_ms_p50": [
                        percentiles([1000 * p[k][0] for p in passes])["p50"] for k in range(len(passes[0]))
                    ],
                    "head_ms_p50": [
                        percentiles([1000 * p[k][1] for p in passes])["p50"] for k in range(len(passes[0]))
                    ],
                }
            )
        results.setdefault("runners", []).append(
            {"precision": runner.precision, "channels_last": runner.channels_last, "unfolded_batch_norms": norms}
        )
    return results


def table(results: dict[str, Any]) -> str:
    """serving p50 ms (model p50 ms) per precision × batch, one column per exit."""
    runs = results["runs"]
    exits = sorted({r["exit"] for r in runs})
    lines = ["precision batch " + " ".join(f"{'exit ' + str(k):>17}" for k in exits) + "   img/s@final"]
    keys = dict.fromkeys((r["precision"], r["batch"]) for r in runs)
    for precision, batch in keys:
        row = {r["exit"]: r for r in runs if r["precision"] == precision and r["batch"] == batch}
        cells = [f"{row[k]['serving_ms']['p50']:8.3f} ({row[k]['model_ms']['p50']:6.3f})" for k in exits]
        rate = row[exits[-1]]["serving_images_per_s"] or 0.0
        lines.append(f"{precision:>9} {batch:5d} " + " ".join(cells) + f"   {rate:11.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda (auto)")
    parser.add_argument("--precisions", type=_names, default=["fp32", "bf16"], help="comma list (fp32,bf16)")
    parser.add_argument("--batches", type=_ints, default=[1, 8, 32, 128], help="comma list (1,8,32,128)")
    parser.add_argument("--data", type=Path, help="ImageFolder root or split folder; none: random pixels")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (torch's default)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    checkpoint = (args.checkpoint or default_checkpoint()).resolve()
    results = measure(checkpoint, device, args.precisions, args.batches, args.data, args.warmup, args.reps)
    results["machine"] = machine.describe(torch.get_num_threads(), str(device))
    results["settings"] = {"warmup": args.warmup, "reps": args.reps, "data": str(args.data) if args.data else None}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    sys.stdout.write(f"{results['machine'].get('gpu') or results['machine']['cpu_model']} ({device})\n")
    sys.stdout.write("serving p50 ms (model-only p50 ms)\n" + table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
