"""The guardrail's baseline: how often each exit agrees with the final exit on held-out images, measured
the way the live guardrail draws its samples (service.engine.guardrail), and stored in `elastic.json`.

An answer stopped by a budget (time or compute) stops whatever the image, so its baseline is the agreement
over all images. An answer stopped by a confidence target `t` at exit k is an image whose confidence
reached `t` at exit k and at no earlier exit, so its baseline is the agreement over exactly those images,
tabulated for a few targets. Confidences use the exits' temperatures, as serving does.
"""

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
from elastic_anytime.models.transforms import normalize_batch

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# a confidence row resting on fewer images than this is left out (null): too noisy to alert on
MIN_IMAGES = 50


@dataclass
class ExitOutputs:
    """Per exit and image: the top class and its (temperature-scaled) softmax probability."""

    predictions: torch.Tensor  # (exits, images) int64
    confidence: torch.Tensor  # (exits, images) float32


@torch.inference_mode()
def exit_outputs(
    model: ElasticNet,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    temperatures: Sequence[float],
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> ExitOutputs:
    """Every exit's answer on uint8 `images` (N, C, H, W), in fp32."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    predictions, confidence = [], []
    try:
        for start in range(0, len(images), batch_size):
            x = normalize_batch(images[start : start + batch_size], mean, std).to(device)
            outputs = model(x)
            probs = [(logits.float() / t).softmax(1) for logits, t in zip(outputs, temperatures, strict=True)]
            top = torch.stack([p.max(1).values for p in probs]).cpu()
            pred = torch.stack([p.argmax(1) for p in probs]).cpu()
            confidence.append(top)
            predictions.append(pred)
    finally:
        model.train(was_training)
    return ExitOutputs(torch.cat(predictions, 1), torch.cat(confidence, 1))


def agreement_table(outputs: ExitOutputs, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The `agreement` field of elastic.json (without its provenance): per exit, agreement with the final exit
    over all images (`all`), and over the images a confidence target t stops there (`confident`, one value
    per threshold; null below MIN_IMAGES images), with those images' counts (`confident_images`)."""
    pred, conf = outputs.predictions, outputs.confidence
    agrees = pred == pred[-1]
    exits = []
    for k in range(pred.shape[0]):
        rows, counts = [], []
        for t in thresholds:
            reached = conf[: k + 1] >= t
            first_here = reached[k] & ~reached[:k].any(0) if k else reached[k]
            n = int(first_here.sum())
            counts.append(n)
            rows.append(round(float(agrees[k][first_here].float().mean()), 4) if n >= MIN_IMAGES else None)
        exits.append({"all": round(float(agrees[k].float().mean()), 4), "confident": rows, "confident_images": counts})
    return {"thresholds": list(thresholds), "images": int(pred.shape[1]), "exits": exits}


def write_agreement(directory: str | Path, table: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Store `table` (with where it was measured) as `agreement` in `elastic.json`; nothing else changes, and
    the weights are not touched, so their recorded hash stays valid. Written atomically, then read back
    through the checkpoint's validation."""
    directory = Path(directory)
    meta = read_metadata(directory)
    if len(table["exits"]) != len(meta["exits"]):
        raise ValueError(f"an agreement table of {len(table['exits'])} exits for {len(meta['exits'])} exits")
    meta["agreement"] = {**provenance, **table}
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, directory / META_FILE)
    return read_metadata(directory)
