"""torchvision VGG-16-BN split into one block per conv-bn-relu (with the max-pool that follows it)."""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg

from models.backbones import Backbone, Block


def vgg16_bn() -> Backbone:
    """VGG's features already suit 32×32 (five pools → 1×1); exits pool globally, so the
    224×224 classifier is not needed."""
    features = vgg.vgg16_bn(weights=None).features
    blocks: list[Block] = []
    current: list[nn.Module] = []
    for module in features:
        current.append(module)
        if isinstance(module, nn.ReLU):
            conv = current[0]
            blocks.append(Block(f"conv{len(blocks) + 1}", nn.Sequential(*current), conv.out_channels))
            current = []
        elif isinstance(module, nn.MaxPool2d):
            blocks[-1].module.append(module)
            current = []
    return Backbone(nn.Identity(), blocks)
