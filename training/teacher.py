"""The teacher the shipped student distils from: a wide, plain CIFAR network (airbench95's shape:
a convolution and a pooled one per resolution, widths 128/256/384). It is trained in the same run
and never shipped; only its softened predictions reach the student."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(cout),
        nn.GELU(),
        *_conv_bn(cout, cout),
    )


class Teacher(nn.Module):
    num_exits = 1  # one exit, like a plain ElasticNet: training.evaluate scores it the same way

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (128, 256, 384), stem: int = 64) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(*_conv_bn(3, stem), _block(stem, a), _block(a, b), _block(b, c))
        self.classifier = nn.Linear(c, num_classes, bias=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        # a list of one exit's logits, like ElasticNet, so one training loop serves both
        return [self.classifier(self.features(x).amax(dim=(2, 3))) / 8]
