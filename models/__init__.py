"""Elastic networks: backbones split into stages with an exit classifier after each."""

from elastic_anytime.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import available_models, create_model

__all__ = [
    "CheckpointError",
    "ElasticNet",
    "available_models",
    "create_model",
    "load_checkpoint",
    "save_checkpoint",
]
