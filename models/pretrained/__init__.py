"""Checkpoints shipped with the project, one directory each with the command that made it."""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
DEFAULT_NAME = "resnet9-cifar10"


def default_checkpoint() -> Path:
    return PRETRAINED_DIR / DEFAULT_NAME
