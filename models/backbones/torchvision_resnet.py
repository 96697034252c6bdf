"""torchvision ResNet-18/34/50 split into stem + one block per BasicBlock/Bottleneck."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet

from elastic_anytime.models.backbones import Backbone, Block
from elastic_anytime.models.backbones.torchvision_weights import load_pretrained

_BUILDERS = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights.DEFAULT),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights.DEFAULT),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights.DEFAULT),
}


def torchvision_resnet(variant: str = "resnet18", cifar_stem: bool = True, pretrained: bool = False) -> Backbone:
    """`cifar_stem`: a stride-1 3×3 first conv and no max-pool, so 32×32 inputs keep resolution.

    `pretrained`: load torchvision's ImageNet weights (downloads); with `cifar_stem` the new first
    conv starts from scratch and every later layer from ImageNet.
    """
    if variant not in _BUILDERS:
        raise ValueError(f"unknown ResNet variant {variant!r}; choose from {sorted(_BUILDERS)}")
    build, weights = _BUILDERS[variant]
    net = build(weights=None)
    if pretrained:
        load_pretrained(net, weights)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    blocks = []
    for layer_name in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(net, layer_name)):
            channels = block.conv3.out_channels if hasattr(block, "conv3") else block.conv2.out_channels
            blocks.append(Block(f"{layer_name}.{i}", block, channels))
    return Backbone(stem, blocks)
