"""Model names → constructors. Every entry builds an ElasticNet from plain JSON-able arguments,
which is what a checkpoint stores to rebuild it. The torchvision backbones (resnet18/50,
mobilenetv2, densenet121, vgg16_bn) also take `pretrained=True` for ImageNet weights (downloads)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from elastic_anytime.models.backbones import Backbone
from elastic_anytime.models.backbones.cifar_resnet import cifar_resnet
from elastic_anytime.models.backbones.densenet import densenet121
from elastic_anytime.models.backbones.fast_resnet import resnet9
from elastic_anytime.models.backbones.mobilenet import mobilenetv2
from elastic_anytime.models.backbones.torchvision_resnet import torchvision_resnet
from elastic_anytime.models.backbones.vgg import vgg16_bn
from elastic_anytime.models.cascade import multiscale_cascade
from elastic_anytime.models.elastic import ElasticNet, ExitSpec
from elastic_anytime.models.heads import head_factory

_BACKBONES: dict[str, Callable[..., Backbone]] = {
    "tiny": lambda: cifar_resnet(depth=8, width=4),
    "cifar_resnet20": lambda width=16: cifar_resnet(20, width),
    "cifar_resnet56": lambda width=16: cifar_resnet(56, width),
    "resnet9": resnet9,
    "resnet18": partial(torchvision_resnet, "resnet18"),
    "resnet50": partial(torchvision_resnet, "resnet50"),
    "mobilenetv2": mobilenetv2,
    "densenet121": densenet121,
    "vgg16_bn": vgg16_bn,
}


# Whole networks with their own exit heads: built directly, every exit kept ("exits" must be "all").
_NETWORKS: dict[str, Callable[..., ElasticNet]] = {
    "multiscale_cascade": multiscale_cascade,
}


def available_models() -> list[str]:
    return sorted([*_BACKBONES, *_NETWORKS])


def available_backbones() -> list[str]:
    """The models that take `exits` and `head` choices (whole networks bring their own)."""
    return sorted(_BACKBONES)


def create_model(
    name: str,
    num_classes: int = 10,
    exits: ExitSpec = "all",
    head: str = "linear",
    dropout: float = 0.0,
    head_width: int = 0,
    **backbone_args: Any,
) -> ElasticNet:
    """Build registered model `name`. `exits`: 'all' | 'final' | every n-th (int) | block indices."""
    if name in _NETWORKS:
        return _network(name, num_classes, exits, head, **backbone_args)
    if name not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(available_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    try:
        backbone = _BACKBONES[name](**backbone_args)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from err
    return ElasticNet.from_blocks(
        backbone.stem, backbone.blocks, exits, head_factory(num_classes, head, dropout, head_width)
    )


def _network(name: str, num_classes: int, exits: ExitSpec, head: str, **args: Any) -> ElasticNet:
    if exits != "all" or head != "linear":
        raise ValueError(f"model {name!r} has its own exits after every stage: exits must be 'all', head 'linear'")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    try:
        return _NETWORKS[name](num_classes=num_classes, **args)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from err
