"""Losses over all exits.

- uniform: the paper's plain sum of per-exit cross-entropies;
- weighted: exit k weighs (k+1), normalised so the weights sum to the number of exits;
- distill: the final exit learns from the labels; each earlier exit mixes cross-entropy with a KL
  term towards the (detached) final exit's softened prediction (self-distillation, temperature T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

LOSS_MODES = ("uniform", "weighted", "distill")


def exit_weights(num_exits: int, mode: str) -> list[float]:
    if mode == "weighted":
        raw = [k + 1 for k in range(num_exits)]
        return [num_exits * w / sum(raw) for w in raw]
    return [1.0] * num_exits


def elastic_loss(
    logits: list[torch.Tensor],
    targets: torch.Tensor,
    mode: str = "uniform",
    label_smoothing: float = 0.0,
    temperature: float = 3.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """Scalar loss summed over exits (a model with one exit reduces to plain cross-entropy)."""
    if mode not in LOSS_MODES:
        raise ValueError(f"loss must be one of {LOSS_MODES}, got {mode!r}")
    logits = [z.float() for z in logits]
    ce = [F.cross_entropy(z, targets, label_smoothing=label_smoothing) for z in logits]
    if mode != "distill" or len(logits) == 1:
        return sum(w * c for w, c in zip(exit_weights(len(logits), mode), ce, strict=True))
    teacher = F.softmax(logits[-1].detach() / temperature, dim=1)
    total = ce[-1]
    for z, c in zip(logits[:-1], ce[:-1], strict=True):
        kl = F.kl_div(F.log_softmax(z / temperature, dim=1), teacher, reduction="batchmean")
        total = total + (1 - alpha) * c + alpha * temperature**2 * kl
    return total
