"""ResNet-9 ("How to train your ResNet", Page 2018): a wide, shallow CIFAR net that trains to
high accuracy in few epochs, which is what a 2-core CPU can afford. Five blocks, five exits."""

from __future__ import annotations

from torch import Tensor, nn

from elastic_anytime.models.backbones import Backbone, Block


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(channels, channels), conv_bn_relu(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), nn.MaxPool2d(2))


def resnet9(width: int = 64) -> Backbone:
    w = width
    stem = conv_bn_relu(3, w)
    blocks = [
        Block("layer1.down", down(w, 2 * w), 2 * w),
        Block("layer1.res", Residual(2 * w), 2 * w),
        Block("layer2.down", down(2 * w, 4 * w), 4 * w),
        Block("layer3.down", down(4 * w, 8 * w), 8 * w),
        Block("layer3.res", Residual(8 * w), 8 * w),
    ]
    return Backbone(stem, blocks)
