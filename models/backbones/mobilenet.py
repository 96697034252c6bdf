"""torchvision MobileNetV2 split into stem + one block per inverted-residual block."""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from elastic_anytime.models.backbones import Backbone, Block
from elastic_anytime.models.backbones.torchvision_weights import load_pretrained


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def mobilenetv2(width_mult: float = 1.0, cifar_stem: bool = True, pretrained: bool = False) -> Backbone:
    """`cifar_stem`: stride-1 first conv and stride-1 second stage (the usual CIFAR adaptation),
    so 32×32 inputs end at 4×4 instead of 1×1. `pretrained`: torchvision's ImageNet weights
    (downloads; width_mult 1.0 only); strides do not change the weights' shapes."""
    if pretrained and width_mult != 1.0:
        raise ValueError(f"torchvision has ImageNet weights for MobileNetV2 width_mult=1.0 only, got {width_mult}")
    net = mobilenet_v2(weights=None, width_mult=width_mult)
    if pretrained:
        load_pretrained(net, MobileNet_V2_Weights.DEFAULT)
    features = net.features
    if cifar_stem:
        features[0][0].stride = (1, 1)
        features[2].conv[1][0].stride = (1, 1)  # depthwise conv of the first stride-2 block
    stem = features[0]
    layers = list(features[1:])
    # The closing 1×1 conv (to 1280 channels) belongs to the last block: the final exit sees it.
    layers[-2] = nn.Sequential(layers[-2], layers[-1])
    blocks = [Block(f"features.{i + 1}", m, _out_channels(m)) for i, m in enumerate(layers[:-1])]
    return Backbone(stem, blocks)
