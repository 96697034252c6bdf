"""Preprocessing shared by training, evaluation and serving, driven by checkpoint metadata."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def eval_transform(input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL image or uint8 tensor of any size → normalised float tensor of `input_size` (C, H, W).

    The shorter side is resized to the model's size and the centre cropped, so aspect ratio is kept.
    """
    _, height, width = input_size
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(min(height, width), antialias=True),
            v2.CenterCrop((height, width)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def normalize_batch(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) → normalised float, for tensor pipelines that skip PIL."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t
