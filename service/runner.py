"""The torch side of serving, as a few small hooks: preprocess, batch, step, select, top_k, time_pass.

The engine drives these without importing torch. Everything runs under `torch.inference_mode`; a
step ends with the probabilities copied to the CPU, which also synchronises CUDA, so the time
around a step is the real compute time of that stage and its exit head.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from PIL import Image

from models.checkpoint import Checkpoint
from models.transforms import eval_transform

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU. Asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


class ModelRunner:
    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.meta = checkpoint.meta
        self.classes = checkpoint.classes
        self.num_exits = self.model.num_exits
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        # what a stage-by-stage run has spent once exit k answers: earlier heads included
        self.exit_mflops = [float(e.get("anytime_mflops", e["mflops"])) for e in self.meta["exits"]]
        self._transform = eval_transform(self.input_size, self.meta["mean"], self.meta["std"])

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def min_side(self) -> int:
        return min(self.input_size[1:])

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A decoded PIL image → the normalised (C, H, W) CPU tensor the model takes."""
        return self._transform(image)

    @torch.inference_mode()
    def batch(self, tensors: list[Any]) -> torch.Tensor:
        return torch.stack(tensors).to(self.device, non_blocking=True)

    @torch.inference_mode()
    def step(self, index: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float], list[int]]:
        """Stage `index` and its exit: (features for the next stage, CPU probs, confidences, class ids)."""
        features = self.model.run_stage(index, features)
        probs = torch.softmax(self.model.run_exit(index, features).float(), dim=1).cpu()
        confidence, class_id = probs.max(dim=1)
        return features, probs, confidence.tolist(), class_id.tolist()

    @torch.inference_mode()
    def select(self, features: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Keep only `rows` of the batch: requests that stopped leave it."""
        return features.index_select(0, torch.tensor(rows, device=features.device))

    def top_k(self, probs: torch.Tensor, row: int, k: int) -> list[tuple[int, float]]:
        values, indices = probs[row].topk(min(k, probs.shape[1]))
        return list(zip(indices.tolist(), values.tolist(), strict=True))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def time_pass(self, batch_size: int) -> list[float]:
        """One stage-by-stage pass on random input; seconds of each stage + head (for calibration)."""
        features = torch.randn(batch_size, *self.input_size, device=self.device)
        self._sync()
        times = []
        for k in range(self.num_exits):
            start = time.perf_counter()
            features, _, _, _ = self.step(k, features)
            times.append(time.perf_counter() - start)
        return times
