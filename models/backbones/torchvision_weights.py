"""ImageNet weights for torchvision backbones, requested explicitly with `pretrained=True`.

torchvision's builders load their `.pth` files with `weights_only=False` (full unpickling); we
fetch them ourselves with `weights_only=True` and the hash check on, then load the state dict.
Nothing here runs unless a user asks for pretrained weights: it downloads.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn
from torchvision.models import WeightsEnum

log = logging.getLogger(__name__)

# Old DenseNet checkpoints name their layers 'norm.1', 'conv.2', …; torchvision remaps them the same way.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class PretrainedWeightsError(RuntimeError):
    """torchvision weights could not be fetched, verified or loaded."""


def fetch_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """Download (or read from the torch hub cache) and verify `weights`; never fully unpickles."""
    log.info("fetching torchvision weights %s from %s", weights, weights.url)
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)
    except Exception as err:  # network, hash and unpickling errors all mean the same thing to the user
        raise PretrainedWeightsError(
            f"could not fetch torchvision weights {weights} from {weights.url}: {err}. "
            f"pretrained=True downloads them once into {torch.hub.get_dir()}/checkpoints; "
            "it needs network access or a valid copy of that file there"
        ) from err
    return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def load_pretrained(net: nn.Module, weights: WeightsEnum) -> None:
    """Load `weights` into the freshly built torchvision `net` (before any CIFAR surgery)."""
    state = fetch_state_dict(weights)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"torchvision weights {weights} do not fit the model: {err}") from err
