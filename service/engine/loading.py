"""A checkpoint made ready to serve, wherever the model runs (the engine process, or a thread engine's server):
loaded and validated (models.checkpoint: never unpickles), an empty latency profile for it, the engine's
config from the settings, and the checks a hot reload makes before it switches. torch is imported only
inside the functions that run the model."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from elastic_anytime.service.engine.profile import LatencyProfile, batch_buckets
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.engine.types import EngineConfig
from elastic_anytime.service.settings import Settings

if TYPE_CHECKING:
    import torch

    from elastic_anytime.service.engine.runner import ModelRunner

log = logging.getLogger(__name__)

SWAP_TIMEOUT_S = 60.0  # the inference thread switches after its current batch; far less than this


def new_profile(settings: Settings, num_exits: int) -> LatencyProfile:
    """An empty latency profile for a model with `num_exits` exits, at the batch sizes the engine forms."""
    buckets = batch_buckets(settings.max_batch_size)
    return LatencyProfile(num_exits, buckets, settings.profile_window, settings.profile_max_age_s)


def load_model(settings: Settings, path: Path, device: torch.device) -> tuple[ModelRunner, LatencyProfile]:
    """Load and validate a checkpoint with an empty latency profile."""
    from elastic_anytime.models.checkpoint import load_checkpoint
    from elastic_anytime.service.engine.runner import ModelRunner

    started = time.perf_counter()
    checkpoint = load_checkpoint(path)  # on the CPU: the runner folds a CPU copy, then moves it to `device`
    runner = ModelRunner(checkpoint, device, precision=settings.precision)
    log.info(
        "loaded %s (%d exits) from %s on %s (%s) in %.2fs",
        checkpoint.meta["arch"]["name"], runner.num_exits, path, device, runner.precision,
        time.perf_counter() - started,
    )  # fmt: skip
    return runner, new_profile(settings, runner.num_exits)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1e3,
        queue_limit=settings.queue_limit,
        margin_s=settings.response_margin_ms / 1e3,
        quantile=settings.profile_quantile,
        handoff_quantile=None if settings.handoff_quantile == "off" else settings.handoff_quantile,
        reject_unmeetable=settings.reject_unmeetable,
        warmup_runs=settings.warmup_runs,
        calibration_runs=settings.calibration_runs,
        idle_refresh_s=settings.idle_refresh_ms / 1e3 or None,  # 0: off
        cold_after_s=settings.cold_after_ms / 1e3,
        gil_switch_interval_s=settings.gil_switch_interval_ms / 1e3,
    )


def check_compatible(served: ModelRunner, new: ModelRunner) -> None:
    """Requests already decoded for the served model may run on the new one: same input format."""
    for key in ("input_size", "mean", "std"):
        if [float(v) for v in served.meta[key]] != [float(v) for v in new.meta[key]]:
            raise ReloadError(
                422,
                "incompatible_checkpoint",
                f"its {key} {new.meta[key]} differs from the served model's {served.meta[key]}; "
                "a different input format needs a restart",
            )


def trial_run(runner: ModelRunner) -> None:
    """One real image through every stage and exit: the outputs must be finite and one per class."""
    import torch

    channels, height, width = runner.input_size
    image = Image.new("L" if channels == 1 else "RGB", (width, height), 128)
    with torch.inference_mode():
        features = runner.batch([runner.preprocess(image)])
        for k in range(runner.num_exits):
            features = runner.model.run_stage(k, features)
            logits = runner.model.run_exit(k, features)
            finite = bool(torch.isfinite(logits).all())
            if tuple(logits.shape) != (1, len(runner.classes)) or not finite:
                raise ReloadError(
                    422,
                    "checkpoint_failed_trial",
                    f"exit {k} gave {tuple(logits.shape)} outputs (finite: {finite}) for {len(runner.classes)} classes",
                )
