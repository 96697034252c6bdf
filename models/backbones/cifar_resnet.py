"""The CIFAR ResNet family of He et al. (2016): 6n+2 layers, three stages, width configurable."""

from __future__ import annotations

from torch import Tensor, nn

from elastic_anytime.models.backbones import Backbone, Block


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride)
        self.conv2 = conv_bn(cout, cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        return self.relu(out + self.shortcut(x))


def cifar_resnet(depth: int = 20, width: int = 16) -> Backbone:
    """ResNet-`depth` for 32×32 inputs; every BasicBlock is one block (one exit with exits='all')."""
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110…), got {depth}")
    per_stage = (depth - 2) // 6
    stem = nn.Sequential(conv_bn(3, width), nn.ReLU(inplace=True))
    blocks: list[Block] = []
    cin = width
    for stage, mult in enumerate((1, 2, 4)):
        cout = width * mult
        for i in range(per_stage):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(Block(f"stage{stage + 1}.block{i}", BasicBlock(cin, cout, stride), cout))
            cin = cout
    return Backbone(stem, blocks)
