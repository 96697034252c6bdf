"""Hot reload: serve another checkpoint without a restart, or keep the current one.

The new checkpoint is loaded beside the served one (models.checkpoint validates schema, shapes,
classes against the head size, non-finite weights and the weights' SHA-256; it never unpickles),
checked against the served model's input format, run once on a real image, and calibrated on this
device, all while the old model keeps answering. Only then does the engine switch, between two
batches (`Engine.swap_model`). Any failure leaves the old model serving and says why.

Blocking (loading and calibrating take seconds): callers run it in a worker thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from models.checkpoint import CheckpointError
from service.engine_process import EngineProcess
from service.profile import LatencyProfile, calibrate
from service.reload_error import ReloadError
from service.runner import ModelRunner
from service.state import ServiceState, load_model

log = logging.getLogger(__name__)

SWAP_TIMEOUT_S = 60.0  # the inference thread switches after its current batch; far less than this
CHILD_RELOAD_TIMEOUT_S = 300.0  # ELASTIC_ENGINE=process: the child loads and calibrates again, then switches


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


@torch.inference_mode()
def trial_run(runner: ModelRunner) -> None:
    """One real image through every stage and exit: the outputs must be finite and one per class."""
    channels, height, width = runner.input_size
    image = Image.new("L" if channels == 1 else "RGB", (width, height), 128)
    features = runner.batch([runner.preprocess(image)])
    for k in range(runner.num_exits):
        features = runner.model.run_stage(k, features)
        logits = runner.model.run_exit(k, features)
        if tuple(logits.shape) != (1, len(runner.classes)) or not bool(torch.isfinite(logits).all()):
            raise ReloadError(
                422,
                "checkpoint_failed_trial",
                f"exit {k} gave {tuple(logits.shape)} outputs (finite: {bool(torch.isfinite(logits).all())}) "
                f"for {len(runner.classes)} classes",
            )


def prepare(service: ServiceState, directory: str) -> tuple[Path, ModelRunner, LatencyProfile, dict[str, float]]:
    """Load, check and calibrate the checkpoint in `directory` beside the served model."""
    settings = service.settings
    timings: dict[str, float] = {}
    started = time.perf_counter()
    path = Path(directory)
    try:
        # inside the try: "~nobody/x" or an embedded NUL byte raise here, and are the client's mistake
        path = path.expanduser().resolve()
        runner, profile = load_model(settings, path, service.runner.device)
    except CheckpointError as err:
        raise ReloadError(422, "invalid_checkpoint", str(err)) from None
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as err:  # what a broken file can still raise
        raise ReloadError(422, "invalid_checkpoint", f"cannot load {path}: {err}") from None
    timings["load_s"] = time.perf_counter() - started
    check_compatible(service.runner, runner)
    try:
        trial_run(runner)
        started = time.perf_counter()
        calibrate(profile, runner.time_pass, settings.warmup_runs, settings.calibration_runs, idle=time.sleep)
    except ReloadError:
        raise
    except Exception as err:  # a model that cannot run here must not replace one that can
        raise ReloadError(422, "checkpoint_failed_trial", f"the model failed a trial run: {err}") from None
    timings["calibrate_s"] = time.perf_counter() - started
    return path, runner, profile, timings


def reload_checkpoint(service: ServiceState, directory: str) -> dict[str, Any]:
    """Prepare `directory`, swap it in between two batches, and describe what is served now."""
    previous = service.checkpoint_path
    try:
        path, runner, profile, timings = prepare(service, directory)
    except ReloadError as err:
        log.warning("reload of %s refused, still serving %s: %s", directory, previous, err.message)
        raise
    engine = service.engine
    if isinstance(engine, EngineProcess):  # checked here; the child loads and calibrates its own copy, then swaps
        error = engine.reload(path, profile, CHILD_RELOAD_TIMEOUT_S)
        if error is not None:
            raise ReloadError(503, "swap_failed", f"the inference process did not switch: {error}")
    elif not engine.swap_model(runner, profile, SWAP_TIMEOUT_S):
        raise ReloadError(503, "swap_timeout", f"the inference thread did not switch within {SWAP_TIMEOUT_S:.0f}s")
    service.adopt(path, runner, profile)
    log.info(
        "reloaded: now serving %s (%d exits) from %s, was %s (load %.2fs, calibrate %.2fs)",
        service.model_name, runner.num_exits, path, previous, timings["load_s"], timings["calibrate_s"],
    )  # fmt: skip
    return {
        "checkpoint": str(path),
        "previous_checkpoint": str(previous),
        "model": service.model_name,
        "num_exits": runner.num_exits,
        "classes": list(runner.classes),
        "load_s": round(timings["load_s"], 4),
        "calibrate_s": round(timings["calibrate_s"], 4),
    }
