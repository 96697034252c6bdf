"""Elastic networks: backbones split into stages with an exit classifier after each.

The names below load on first use (PEP 562), so that `models.metadata` and `models.pretrained`, which need
no torch, can be imported by a front end without importing torch through this package."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CheckpointError": "elastic_anytime.models.metadata",
    "ElasticNet": "elastic_anytime.models.elastic",
    "available_models": "elastic_anytime.models.registry",
    "create_model": "elastic_anytime.models.registry",
    "load_checkpoint": "elastic_anytime.models.checkpoint",
    "save_checkpoint": "elastic_anytime.models.checkpoint",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
