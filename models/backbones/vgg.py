"""torchvision VGG-16-BN split into one block per conv-bn-relu (with the max-pool that follows it)."""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg

from elastic_anytime.models.backbones import Backbone, Block
from elastic_anytime.models.backbones.torchvision_weights import load_pretrained


def _features(pretrained: bool) -> nn.Sequential:
    if pretrained:
        net = vgg.vgg16_bn(weights=None)
        load_pretrained(net, vgg.VGG16_BN_Weights.DEFAULT)
        return net.features
    # Only the conv features: the 224×224 classifier holds 120M parameters we would throw away.
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=True)
    for m in features.modules():  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return features


def vgg16_bn(pretrained: bool = False) -> Backbone:
    """VGG's features already suit 32×32 (five pools → 1×1); exits pool globally, so the
    224×224 classifier is not needed. `pretrained`: torchvision's ImageNet weights (downloads)."""
    blocks: list[Block] = []
    current: list[nn.Module] = []
    for module in _features(pretrained):
        current.append(module)
        if isinstance(module, nn.ReLU):
            conv = current[0]
            blocks.append(Block(f"conv{len(blocks) + 1}", nn.Sequential(*current), conv.out_channels))
            current = []
        elif isinstance(module, nn.MaxPool2d):
            blocks[-1].module.append(module)
            current = []
    return Backbone(nn.Identity(), blocks)
