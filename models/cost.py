"""Per-exit cost: cumulative MFLOPs and parameters from the input to each exit.

FLOPs come from torch.utils.flop_counter (a multiply-add counts as 2 FLOPs). `mflops` is the cost
of stopping at exit k directly (stem, stages 0..k, head k); `anytime_mflops` adds the heads of the
earlier exits, which an anytime executor also evaluates on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from elastic_anytime.models.elastic import ElasticNet


@dataclass(frozen=True)
class ExitCost:
    mflops: float
    anytime_mflops: float
    params: int


def _count_flops(fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return counter.get_total_flops(), out


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def exit_costs(model: ElasticNet, input_size: tuple[int, int, int]) -> list[ExitCost]:
    """Cost of every exit for one image of `input_size` (C, H, W)."""
    was_training = model.training
    model.eval()
    try:
        features = torch.zeros(1, *input_size)
        path_flops, heads_flops = 0, 0
        path_params = _params(model.stem)
        costs = []
        for k in range(model.num_exits):
            stage_flops, features = _count_flops(model.run_stage, k, features)
            head_flops, _ = _count_flops(model.run_exit, k, features)
            path_flops += stage_flops
            path_params += _params(model.stages[k])
            costs.append(
                ExitCost(
                    mflops=(path_flops + head_flops) / 1e6,
                    anytime_mflops=(path_flops + heads_flops + head_flops) / 1e6,
                    params=path_params + _params(model.exits[k]),
                )
            )
            heads_flops += head_flops
        return costs
    finally:
        model.train(was_training)
