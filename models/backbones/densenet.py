"""torchvision DenseNet-121 split into stem + one block per dense layer (transitions open the
next dense block), so exits can sit after any dense layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import densenet

from elastic_anytime.models.backbones import Backbone, Block
from elastic_anytime.models.backbones.torchvision_weights import load_pretrained


class DenseStep(nn.Module):
    """One dense layer as a block: concatenates its new features to its input."""

    def __init__(self, layer: nn.Module, before: nn.Module | None = None) -> None:
        super().__init__()
        self.before = before if before is not None else nn.Identity()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.before(x)
        return torch.cat([x, self.layer(x)], 1)


class FinalNorm(nn.Sequential):
    """DenseNet's closing norm + relu, attached to the last dense layer."""


def densenet121(growth_rate: int = 32, cifar_stem: bool = True, pretrained: bool = False) -> Backbone:
    """`cifar_stem`: a stride-1 3×3 conv replaces conv/norm/relu/max-pool, for 32×32 inputs.
    `pretrained`: torchvision's ImageNet weights (downloads; growth_rate 32 only)."""
    if pretrained and growth_rate != 32:
        raise ValueError(f"torchvision has ImageNet weights for DenseNet-121 growth_rate=32 only, got {growth_rate}")
    net = densenet.DenseNet(growth_rate=growth_rate, block_config=(6, 12, 24, 16), num_init_features=2 * growth_rate)
    if pretrained:
        load_pretrained(net, densenet.DenseNet121_Weights.DEFAULT)
    f = net.features
    if cifar_stem:
        conv = nn.Conv2d(3, 2 * growth_rate, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight)  # as torchvision initialises DenseNet convs
        stem = nn.Sequential(conv)
    else:
        stem = nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)
    blocks: list[Block] = []
    channels = 2 * growth_rate
    pending: nn.Module | None = None
    for b in range(1, 5):
        for i, layer in enumerate(getattr(f, f"denseblock{b}").values()):
            channels += growth_rate
            blocks.append(Block(f"denseblock{b}.layer{i + 1}", DenseStep(layer, pending), channels))
            pending = None
        if b < 4:
            transition = getattr(f, f"transition{b}")
            pending = transition
            channels //= 2
    last = blocks[-1]
    last.module = nn.Sequential(last.module, FinalNorm(f.norm5, nn.ReLU(inplace=True)))
    return Backbone(stem, blocks)
