"""Batch augmentation on the device: random translation (reflect-padded crop), flip and cut-out for
a uint8 (B, C, H, W) tensor, without a Python loop over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name


def augment_batch(images: torch.Tensor, padding: int = 4, flip: bool = True, cutout: int = 0) -> torch.Tensor:
    batch, channels, height, width = images.shape
    device = images.device
    out = images
    if padding:
        padded = F.pad(out.float(), (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (batch, 1), device=device) + torch.arange(height, device=device)
        dx = torch.randint(0, 2 * padding + 1, (batch, 1), device=device) + torch.arange(width, device=device)
        rows = torch.arange(batch, device=device).view(-1, 1, 1, 1)
        chans = torch.arange(channels, device=device).view(1, -1, 1, 1)
        out = padded[rows, chans, dy.view(batch, 1, height, 1), dx.view(batch, 1, 1, width)].to(images.dtype)
    if flip:
        mask = torch.rand(batch, device=device) < 0.5
        out = torch.where(mask.view(-1, 1, 1, 1), out.flip(3), out)
    if cutout:
        cy = torch.randint(0, height, (batch, 1, 1), device=device)
        cx = torch.randint(0, width, (batch, 1, 1), device=device)
        ys = torch.arange(height, device=device).view(1, -1, 1)
        xs = torch.arange(width, device=device).view(1, 1, -1)
        hole = ((ys - cy).abs() <= cutout // 2) & ((xs - cx).abs() <= cutout // 2)
        out = out.masked_fill(hole.unsqueeze(1), 0)
    return out
