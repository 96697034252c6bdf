"""Hot reload: serve another checkpoint without a restart, or keep the current one.

The new checkpoint is loaded beside the served one (models.checkpoint validates schema, shapes,
classes against the head size, non-finite weights and the weights' SHA-256; it never unpickles),
checked against the served model's input format, run once on a real image, and calibrated on its
device, all while the old model keeps answering. Only then does the engine switch, between two
batches (`Engine.swap_model`). Any failure leaves the old model serving and says why.

With the thread engine all of that happens in this process. With the process engine it happens in
the inference process (`EngineProcess.reload`, which runs `check_compatible` and `trial_run` from
here); this process, which holds no weights and no torch, only reads the new checkpoint's card
(service.http.model_card) first, so that a directory without a valid elastic.json is refused at once.

Blocking (loading and calibrating take seconds): callers run it in a worker thread. torch is imported
only on the thread engine's path: importing this module must not import it (a front end imports it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elastic_anytime.service.engine.loading import SWAP_TIMEOUT_S, check_compatible, load_model, trial_run
from elastic_anytime.service.engine.profile import calibrate
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.http.model_card import ModelCard, ModelCardError
from elastic_anytime.service.http.state import ServiceState

if TYPE_CHECKING:
    from elastic_anytime.service.engine.profile import LatencyProfile
    from elastic_anytime.service.engine.runner import ModelRunner

log = logging.getLogger(__name__)

CHILD_RELOAD_TIMEOUT_S = 300.0  # ELASTIC_ENGINE=process: the child loads and calibrates again, then switches


def prepare(service: ServiceState, directory: str) -> tuple[Path, ModelRunner, LatencyProfile, dict[str, float]]:
    """Load, check and calibrate the checkpoint in `directory` beside the served model."""
    from elastic_anytime.models.checkpoint import CheckpointError  # torch: the thread engine's path only

    settings = service.settings
    timings: dict[str, float] = {}
    started = time.perf_counter()
    path = resolve_path(directory)
    try:
        runner, profile = load_model(settings, path, service.runner.device)  # a ModelRunner here
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


def resolve_path(directory: str) -> Path:
    """The absolute path of `directory`; "~nobody/x" or an embedded NUL byte raise here, the client's mistake."""
    try:
        return Path(directory).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise ReloadError(422, "invalid_checkpoint", f"cannot load {directory}: {err}") from None


def reload_checkpoint(service: ServiceState, directory: str) -> dict[str, Any]:
    """Prepare `directory`, swap it in between two batches, and describe what is served now."""
    previous = service.checkpoint_path
    engine = service.engine
    try:
        if isinstance(engine, Engine):  # the model runs here: load, check and calibrate beside the served one
            path, runner, profile, timings = prepare(service, directory)
            if not engine.swap_model(runner, profile, SWAP_TIMEOUT_S):
                raise ReloadError(
                    503, "swap_timeout", f"the inference thread did not switch within {SWAP_TIMEOUT_S:.0f}s"
                )
            service.adopt(path, runner, profile)
        else:  # the inference process loads, checks, calibrates and switches; this process reads the card
            path, card, timings = _reload_in_child(service, directory)
            service.adopt(path, card, engine.profile)  # the mirror the child's calibration filled
    except ReloadError as err:
        log.warning("reload of %s refused, still serving %s: %s", directory, previous, err.message)
        raise
    runner_now = service.runner
    log.info(
        "reloaded: now serving %s (%d exits) from %s, was %s (load %.2fs, calibrate %.2fs)",
        service.model_name, runner_now.num_exits, path, previous, timings["load_s"], timings["calibrate_s"],
    )  # fmt: skip
    return {
        "checkpoint": str(path),
        "previous_checkpoint": str(previous),
        "model": service.model_name,
        "num_exits": runner_now.num_exits,
        "classes": list(runner_now.classes),
        "load_s": round(timings["load_s"], 4),
        "calibrate_s": round(timings["calibrate_s"], 4),
    }


def _reload_in_child(service: ServiceState, directory: str) -> tuple[Path, ModelCard, dict[str, float]]:
    """The process engine's reload: the new card first (a directory without a valid elastic.json is refused
    without bothering the inference process), then `EngineProcess.reload`, which raises ReloadError with the
    codes of `prepare` (or 503 swap_failed) and returns the child's {"load_s", "calibrate_s"}."""
    path = resolve_path(directory)
    try:
        card = ModelCard.read(path)
    except ModelCardError as err:
        raise ReloadError(422, "invalid_checkpoint", str(err)) from None
    try:
        timings = service.engine.reload(path, CHILD_RELOAD_TIMEOUT_S)
    except ReloadError:
        raise
    except Exception as err:  # the engine's contract is ReloadError; anything else still leaves the old model
        raise ReloadError(503, "swap_failed", f"the inference process did not switch: {err}") from None
    return path, card, timings
