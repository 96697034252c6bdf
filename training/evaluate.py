"""Per-exit evaluation: top-1 accuracy and mean confidence of every exit in one pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.elastic import ElasticNet
from models.transforms import normalize_batch


@dataclass
class ExitScores:
    accuracy: list[float]
    confidence: list[float]
    count: int


@torch.inference_mode()
def evaluate(
    model: ElasticNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> ExitScores:
    """Accuracy and mean max-softmax confidence of each exit over uint8 `images`."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    correct = torch.zeros(model.num_exits, dtype=torch.float64)
    confidence = torch.zeros(model.num_exits, dtype=torch.float64)
    try:
        for start in range(0, len(labels), batch_size):
            x = normalize_batch(images[start : start + batch_size], mean, std).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels[start : start + batch_size].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                outputs = model(x)
            for k, logits in enumerate(outputs):
                probs = logits.float().softmax(1)
                top, pred = probs.max(1)
                correct[k] += (pred == y).sum().item()
                confidence[k] += top.sum().item()
    finally:
        model.train(was_training)
    n = max(len(labels), 1)
    return ExitScores((correct / n).tolist(), (confidence / n).tolist(), len(labels))


def exits_report(meta: dict[str, Any], scores: ExitScores) -> list[dict[str, Any]]:
    """Rows of index, name, MFLOPs, % of full compute, accuracy and confidence."""
    full = meta["exits"][-1]["mflops"]
    return [
        {
            "index": e["index"],
            "name": e["name"],
            "mflops": e["mflops"],
            "fraction": e["mflops"] / full,
            "accuracy": scores.accuracy[k],
            "confidence": scores.confidence[k],
        }
        for k, e in enumerate(meta["exits"])
    ]
