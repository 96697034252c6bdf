"""What an engine process serves: its settings, the checkpoint, the model (the runner) with its latency profile,
and the engine that runs it in a thread. Built in the engine process (torch is imported there only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elastic_anytime.service.engine.guardrail import make_guardrail
from elastic_anytime.service.engine.loading import engine_config, load_model
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.settings import Settings
from elastic_anytime.service.worker.cpu_placement import engine_threads

log = logging.getLogger(__name__)


@dataclass
class Served:
    settings: Settings
    checkpoint_path: Path
    runner: Any  # service.engine.runner.ModelRunner
    profile: LatencyProfile
    engine: Engine

    def adopt(self, path: Path, runner: Any, profile: LatencyProfile) -> None:
        """After a hot reload: the engine serves this model now."""
        self.checkpoint_path, self.runner, self.profile = path, runner, profile


def serve_model(settings: Settings) -> Served:  # pragma: no cover - in the engine process
    """Load the checkpoint on the settings' device; the engine is not started (no calibration yet)."""
    import torch

    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.service.engine.runner import resolve_device

    threads = engine_threads(settings.torch_threads)  # `elastic serve --workers N` resolves it for its engines
    torch.set_num_threads(threads)
    log.info("the model runs with %d intra-op threads", threads)
    path = Path(settings.checkpoint) if settings.checkpoint else default_checkpoint()
    runner, profile = load_model(settings, path, resolve_device(settings.device))
    engine = Engine(runner, profile, engine_config(settings), guardrail=make_guardrail(settings.guardrail_share))
    return Served(settings, path, runner, profile, engine)
