"""A multi-scale cascade: an anytime network whose stages each run a complete small network.

Stage k works at three resolutions (16, 8 and 4 pixels for a 32-pixel input) and reads, at each of
them, the feature maps that stage k-1 left there, so a later stage adds width to what earlier ones
computed instead of starting again (MSDNet's dense multi-scale reuse). Each stage ends in its own
classifier, whose input also holds the previous exit's logits (Zero Time Waste's cascade), so exit 0
is a whole network of its own rather than a head on low-level features (ResNet-with-classifiers).

Between stages travels a tuple (maps at 16, 8 and 4, logits); the exit heads only pick the logits,
whose cost (one linear layer) is counted in the stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from elastic_anytime.models.elastic import ElasticNet

CascadeState = tuple[Tensor, Tensor, Tensor, Tensor]
# Exits at about 48, 99, 177 and 297 anytime MFLOPs for a 32x32 input (the shipped recipe's sizes).
DEFAULT_STAGES = ((40, 96, 192), (24, 88, 176), (32, 112, 256), (40, 160, 256))
# Logits are scaled down so that max-pooled, unnormalised features start as mild predictions.
LOGIT_SCALE = 0.125


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Convolution, batch norm, GELU; a Sequential so that serving folds the norm into the conv."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = conv_bn(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def scale_block(cin: int, cout: int, depth: int) -> nn.Sequential:
    """One resolution of a stage: a widening convolution, then depth-1 residual ones."""
    return nn.Sequential(conv_bn(cin, cout), *(Residual(cout) for _ in range(depth - 1)))


class Stem(nn.Module):
    """Full resolution in, half out: one cheap convolution at full size, then a strided one."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(conv_bn(3, channels), conv_bn(channels, out_channels, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class CascadeStage(nn.Module):
    """Maps at three scales (each widened with the previous stage's map there) and an exit's logits."""

    def __init__(self, in_channels: Sequence[int], widths: Sequence[int], depth: int, num_classes: int) -> None:
        super().__init__()
        first = in_channels[1] == 0  # stage 0 has only the stem's map
        w16, w8, w4 = widths
        self.block16 = scale_block(in_channels[0], w16, depth)
        self.block8 = scale_block(w16 + in_channels[1], w8, depth)
        self.block4 = scale_block(w8 + in_channels[2], w4, depth)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(w4 + (0 if first else num_classes), num_classes)
        self.first = first

    def forward(self, state: Tensor | CascadeState) -> CascadeState:
        if self.first:
            m16 = self.block16(state)
            m8 = self.block8(self.pool(m16))
            m4 = self.block4(self.pool(m8))
            return m16, m8, m4, self.classifier(m4.amax(dim=(2, 3))) * LOGIT_SCALE
        p16, p8, p4, logits = state
        m16 = self.block16(p16)
        m8 = self.block8(torch.cat([self.pool(m16), p8], dim=1))
        m4 = self.block4(torch.cat([self.pool(m8), p4], dim=1))
        return m16, m8, m4, self.classifier(torch.cat([m4.amax(dim=(2, 3)), logits], dim=1)) * LOGIT_SCALE


class Logits(nn.Module):
    """The exit head: the stage already computed its logits."""

    def forward(self, state: CascadeState) -> Tensor:
        return state[-1]


def multiscale_cascade(
    num_classes: int = 10,
    stem: Sequence[int] = (16, 32),
    stages: Sequence[Sequence[int]] = DEFAULT_STAGES,
    depth: int = 2,
) -> ElasticNet:
    """`stem` = (channels at full size, channels at half size); `stages` = one (w16, w8, w4) per exit."""
    if len(stem) != 2 or min(stem) < 1:
        raise ValueError(f"stem takes two positive channel counts, got {stem!r}")
    if not stages or any(len(w) != 3 or min(w) < 1 for w in stages):
        raise ValueError(f"stages takes one or more (w16, w8, w4) of positive widths, got {stages!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    blocks, previous = [], (stem[1], 0, 0)
    for widths in stages:
        blocks.append(CascadeStage(previous, widths, depth, num_classes))
        previous = tuple(widths)
    names = [f"stage{k}" for k in range(len(stages))]
    return ElasticNet(Stem(*stem), blocks, [Logits() for _ in stages], names)
