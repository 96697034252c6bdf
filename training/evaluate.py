"""Per-exit evaluation: top-1 accuracy and mean confidence of every exit in one pass, plus the
pieces `elastic eval` needs (a test split prepared the checkpoint's way, metadata write-back)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from elastic_anytime.models.checkpoint import META_FILE, read_metadata
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.transforms import eval_transform, normalize_batch
from elastic_anytime.training.data import TensorData, load_split


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
            # what a stage-by-stage run spends once this exit answers (every earlier head read on the way)
            "anytime_mflops": e.get("anytime_mflops", e["mflops"]),
            "fraction": e["mflops"] / full,
            "accuracy": scores.accuracy[k],
            "confidence": scores.confidence[k],
        }
        for k, e in enumerate(meta["exits"])
    ]


def checkpoint_test_data(
    meta: dict[str, Any],
    data: str,
    root: str = "data",
    download: bool = False,
    limit: int = 0,
    split: str = "test",
) -> TensorData:
    """`split` of `data` as uint8 images of the checkpoint's input size, labels in the checkpoint's class order.

    Geometry is the serving transform's (shorter side resized, centre crop); normalisation is left to
    `evaluate`, with the checkpoint's mean/std.
    """
    channels, height, width = meta["input_size"]
    if channels != 3:
        raise ValueError(f"the checkpoint expects {channels}-channel input; datasets here are RGB")
    ds = load_split(data, split, root, download, image_size=height).subset(limit)
    if tuple(ds.images.shape[2:]) != (height, width):
        geometry = eval_transform(meta["input_size"], (0,) * 3, (1,) * 3).transforms[1:3]  # resize + crop
        ds = TensorData(geometry[1](geometry[0](ds.images)), ds.labels, ds.classes)
    return TensorData(ds.images, _remap_labels(ds.labels, ds.classes, meta["classes"]), list(meta["classes"]))


def _remap_labels(labels: torch.Tensor, data_classes: list[str], model_classes: list[str]) -> torch.Tensor:
    """Dataset label ids → the checkpoint's ids, matched by class name (folders may sort differently)."""
    if data_classes == model_classes:
        return labels
    unknown = [name for name in data_classes if name not in model_classes]
    if unknown:
        raise ValueError(
            f"dataset classes {unknown[:5]} are not among the checkpoint's {len(model_classes)} classes "
            f"({', '.join(model_classes[:10])}{', …' if len(model_classes) > 10 else ''}): wrong dataset?"
        )
    table = torch.tensor([model_classes.index(name) for name in data_classes], dtype=torch.int64)
    return table[labels]


def write_accuracies(directory: str | Path, scores: ExitScores, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Store per-exit accuracy (and how it was measured) in `elastic.json`; the weights are not
    touched, so the recorded weights_sha256 stays valid. Written atomically."""
    directory = Path(directory)
    meta = read_metadata(directory)
    if len(meta["exits"]) != len(scores.accuracy):
        raise ValueError(f"{len(scores.accuracy)} scores for {len(meta['exits'])} exits")
    for entry, accuracy in zip(meta["exits"], scores.accuracy, strict=True):
        entry["accuracy"] = round(accuracy, 6)
    meta["evaluation"] = {**evaluation, "images": scores.count, "confidence": [round(c, 6) for c in scores.confidence]}
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, directory / META_FILE)
    return meta


def format_report(rows: list[dict[str, Any]]) -> str:
    """The per-exit table `elastic eval` prints."""
    lines = [f"{'exit':>4}  {'stage':<24} {'MFLOPs':>9} {'anytime':>9} {'% full':>7} {'top-1':>7} {'confidence':>10}"]
    for r in rows:
        lines.append(
            f"{r['index']:>4}  {r['name']:<24} {r['mflops']:>9.2f} {r['anytime_mflops']:>9.2f} "
            f"{100 * r['fraction']:>6.1f}% "
            f"{100 * r['accuracy']:>6.2f}% {r['confidence']:>10.3f}"
        )
    return "\n".join(lines)
