"""Every loss mode against values worked out by hand on two exits and two classes.

Exit 0 outputs logits (0, 0): p = (1/2, 1/2). Exit 1 outputs (ln 3, 0): p = (3/4, 1/4). Target 0.
So CE0 = ln 2 and CE1 = ln(4/3).
"""

from __future__ import annotations

import math

import pytest
import torch

from elastic_anytime.training.losses import elastic_loss, exit_weights

LN3 = math.log(3)
CE0 = math.log(2)
CE1 = math.log(4 / 3)


def _logits() -> tuple[list[torch.Tensor], torch.Tensor]:
    return [torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])], torch.tensor([0])


def test_uniform_is_the_plain_sum_of_cross_entropies() -> None:
    logits, y = _logits()
    assert elastic_loss(logits, y, "uniform").item() == pytest.approx(CE0 + CE1)  # = ln(8/3)
    assert elastic_loss(logits, y, "uniform").item() == pytest.approx(math.log(8 / 3))


def test_weighted_weighs_deeper_exits_more_and_keeps_the_total_weight() -> None:
    # raw weights 1, 2 → scaled to sum to 2 exits: 2/3 and 4/3
    assert exit_weights(2, "weighted") == pytest.approx([2 / 3, 4 / 3])
    assert sum(exit_weights(5, "weighted")) == pytest.approx(5)
    logits, y = _logits()
    assert elastic_loss(logits, y, "weighted").item() == pytest.approx(2 / 3 * CE0 + 4 / 3 * CE1)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_distill_mixes_cross_entropy_with_kl_to_the_final_exit(temperature: float) -> None:
    logits, y = _logits()
    alpha = 0.25
    # teacher = softmax((ln 3, 0) / T) = (3^(1/T), 1) / (3^(1/T) + 1); student (exit 0) stays (1/2, 1/2)
    t0 = 3 ** (1 / temperature) / (3 ** (1 / temperature) + 1)
    teacher = (t0, 1 - t0)
    kl = sum(p * math.log(p / 0.5) for p in teacher)
    expected = CE1 + (1 - alpha) * CE0 + alpha * temperature**2 * kl
    got = elastic_loss(logits, y, "distill", temperature=temperature, alpha=alpha).item()
    assert got == pytest.approx(expected)
    if temperature == 1.0:  # the closed form: teacher (3/4, 1/4)
        assert kl == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_distill_averages_over_the_batch() -> None:
    # second sample: exit 0 already agrees with the teacher, so its KL term is 0
    logits = [torch.tensor([[0.0, 0.0], [LN3, 0.0]]), torch.tensor([[LN3, 0.0], [LN3, 0.0]])]
    y = torch.tensor([0, 0])
    kl_first = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    expected = CE1 + 0.5 * (CE0 + CE1) / 2 + 0.5 * kl_first / 2
    got = elastic_loss(logits, y, "distill", temperature=1.0, alpha=0.5).item()
    assert got == pytest.approx(expected)


def test_label_smoothing_spreads_the_target() -> None:
    logits, y = _logits()
    eps = 0.2
    # target distribution (1 - eps/2, eps/2); exit 0 is uniform so its CE stays ln 2
    ce1 = -(1 - eps / 2) * math.log(3 / 4) - eps / 2 * math.log(1 / 4)
    assert elastic_loss(logits, y, "uniform", label_smoothing=eps).item() == pytest.approx(CE0 + ce1)


@pytest.mark.parametrize("mode", ["uniform", "weighted", "distill"])
def test_one_exit_is_plain_cross_entropy(mode: str) -> None:
    z = torch.tensor([[LN3, 0.0]])
    assert elastic_loss([z], torch.tensor([0]), mode).item() == pytest.approx(CE1)


def test_distill_teacher_is_detached() -> None:
    """The final exit learns from the labels only: its gradient is that of its own cross-entropy."""
    final = torch.tensor([[LN3, 0.0]], requires_grad=True)
    early = torch.tensor([[0.0, 0.0]], requires_grad=True)
    elastic_loss([early, final], torch.tensor([0]), "distill").backward()
    # d CE / d logits = p - onehot = (3/4 - 1, 1/4)
    assert final.grad[0].tolist() == pytest.approx([-0.25, 0.25])
    assert early.grad.abs().sum() > 0


def test_unknown_mode_is_refused() -> None:
    logits, y = _logits()
    with pytest.raises(ValueError, match="loss must be one of"):
        elastic_loss(logits, y, "mean")
