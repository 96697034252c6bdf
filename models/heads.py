"""Exit heads. `linear` is the paper's (pool → dropout → linear); `conv` adds a small strided conv
first, which helps early exits whose features are still low-level, at a few percent of the cost
of the stage it follows (stride 2, half the channels by default)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

HEAD_TYPES = ("linear", "conv")


class LinearHead(nn.Sequential):
    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )


class ConvHead(nn.Sequential):
    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0, width: int = 0) -> None:
        hidden = width or max(16, channels // 2)
        super().__init__(
            nn.Conv2d(channels, hidden, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


def head_factory(
    num_classes: int, head: str = "linear", dropout: float = 0.0, head_width: int = 0
) -> Callable[[int, bool], nn.Module]:
    """A `make_head(channels, is_final)`: early exits get `head`, the final exit is always linear."""
    if head not in HEAD_TYPES:
        raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}")

    def make_head(channels: int, is_final: bool) -> nn.Module:
        if is_final or head == "linear":
            return LinearHead(channels, num_classes, dropout)
        return ConvHead(channels, num_classes, dropout, head_width)

    return make_head
