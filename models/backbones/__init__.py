"""Backbone adapters: each turns a network family into a stem plus an ordered list of blocks."""

from dataclasses import dataclass

from torch import nn

from elastic_anytime.models.elastic import Block


@dataclass
class Backbone:
    stem: nn.Module
    blocks: list[Block]


__all__ = ["Backbone", "Block"]
