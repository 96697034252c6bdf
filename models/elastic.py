"""The elastic network: a stem, ordered stages, and one exit head after each stage.

Backbones hand over a flat list of blocks; `ElasticNet.from_blocks` groups consecutive blocks so
that every stage ends where an exit sits. Stages and exits are parallel ModuleLists, so "run stage
k, then read exit k" is all an executor needs. The exit to stop at is always a call argument,
never model state: concurrent requests carry different budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

ExitSpec = str | int | Sequence[int]
# What a stage hands the next: one tensor, or a tuple of them (maps at several scales, earlier logits).
Features = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass
class Block:
    """One backbone block: a module, a readable name and the channels it outputs."""

    name: str
    module: nn.Module
    channels: int


def select_exit_blocks(num_blocks: int, exits: ExitSpec) -> list[int]:
    """Indices of the blocks followed by an exit. The last block always gets one.

    `exits` is "all" (every block, as in the paper), "final" (no early exits: the baseline),
    an int n (every n-th block) or an explicit list of block indices.
    """
    if num_blocks < 1:
        raise ValueError("a backbone needs at least one block")
    if exits == "all":
        chosen = list(range(num_blocks))
    elif exits == "final":
        chosen = [num_blocks - 1]
    elif isinstance(exits, int) and not isinstance(exits, bool):
        if exits < 1:
            raise ValueError(f"exits every n-th block needs n >= 1, got {exits}")
        chosen = list(range(exits - 1, num_blocks, exits))
    elif isinstance(exits, Sequence) and not isinstance(exits, str):
        chosen = sorted({int(i) for i in exits})
        bad = [i for i in chosen if not 0 <= i < num_blocks]
        if bad:
            raise ValueError(f"exit block indices {bad} outside 0..{num_blocks - 1}")
    else:
        raise ValueError(f"exits must be 'all', 'final', an int or a list of ints, got {exits!r}")
    if num_blocks - 1 not in chosen:
        chosen.append(num_blocks - 1)
    return chosen


class ElasticNet(nn.Module):
    """Stem + stages + exits. `forward` returns every exit's logits (what training needs)."""

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        exits: Sequence[nn.Module],
        exit_names: Sequence[str],
    ) -> None:
        super().__init__()
        if not (len(stages) == len(exits) == len(exit_names)) or not stages:
            raise ValueError("stages, exits and exit_names must be non-empty and of equal length")
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.exits = nn.ModuleList(exits)
        self.exit_names = list(exit_names)

    @classmethod
    def from_blocks(
        cls,
        stem: nn.Module,
        blocks: Sequence[Block],
        exits: ExitSpec,
        make_head: Callable[[int, bool], nn.Module],
    ) -> ElasticNet:
        """Group `blocks` into stages ending at the chosen exits; `make_head(channels, is_final)`."""
        exit_blocks = select_exit_blocks(len(blocks), exits)
        stages, heads, names = [], [], []
        start = 0
        for end in exit_blocks:
            group = blocks[start : end + 1]
            stages.append(group[0].module if len(group) == 1 else nn.Sequential(*(b.module for b in group)))
            heads.append(make_head(group[-1].channels, end == len(blocks) - 1))
            names.append(group[-1].name)
            start = end + 1
        return cls(stem, stages, heads, names)

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def run_stage(self, index: int, features: Features) -> Features:
        """Stage `index` on `features`; stage 0 takes the image and applies the stem first."""
        if index == 0:
            features = self.stem(features)
        return self.stages[index](features)

    def run_exit(self, index: int, features: Features) -> torch.Tensor:
        """Logits of exit `index` from the output of stage `index`."""
        return self.exits[index](features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits = []
        features = x
        for k in range(self.num_exits):
            features = self.run_stage(k, features)
            logits.append(self.run_exit(k, features))
        return logits

    def forward_until(self, x: torch.Tensor, exit_index: int) -> torch.Tensor:
        """Logits of exit `exit_index`, running only stem, stages 0..k and head k."""
        if not 0 <= exit_index < self.num_exits:
            raise IndexError(f"exit {exit_index} outside 0..{self.num_exits - 1}")
        features = x
        for k in range(exit_index + 1):
            features = self.run_stage(k, features)
        return self.run_exit(exit_index, features)
