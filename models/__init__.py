"""Elastic networks: backbones split into stages with an exit classifier after each."""

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.elastic import ElasticNet
from models.registry import available_models, create_model

__all__ = [
    "CheckpointError",
    "ElasticNet",
    "available_models",
    "create_model",
    "load_checkpoint",
    "save_checkpoint",
]
