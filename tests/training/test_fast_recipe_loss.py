"""The recipe's loss over exits: labels, a teacher, or the final exit as the teacher of the others."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

from elastic_anytime.training.fast_recipe import exit_loss

T = 3.0


def _exits() -> tuple[list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(8, 10, requires_grad=True) for _ in range(3)], torch.randint(0, 10, (8,))


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    target = F.softmax(teacher / T, dim=1)
    return F.kl_div(F.log_softmax(student / T, dim=1), target, reduction="batchmean") * T**2


def test_without_a_teacher_every_exit_learns_the_labels_alone() -> None:
    exits, y = _exits()
    expected = sum(F.cross_entropy(z, y) for z in exits) / 3
    assert exit_loss(exits, y, None, 0.0, T, 0.5).item() == pytest.approx(expected.item())


def test_self_distillation_teaches_the_earlier_exits_from_the_final_one() -> None:
    exits, y = _exits()
    final = exits[-1].detach()
    early = [0.5 * F.cross_entropy(z, y) + 0.5 * _kl(z, final) for z in exits[:-1]]
    expected = (sum(early) + F.cross_entropy(exits[-1], y)) / 3
    loss = exit_loss(exits, y, None, 0.0, T, 0.5, self_distill=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_self_distillation_sends_no_gradient_into_the_final_exit_through_its_students() -> None:
    exits, y = _exits()
    exit_loss(exits, y, None, 0.0, T, 0.5, self_distill=True).backward()
    alone = exits[-1].detach().clone().requires_grad_(True)
    (F.cross_entropy(alone, y) / 3).backward()
    assert torch.allclose(exits[-1].grad, alone.grad)


def test_a_real_teacher_takes_precedence_over_self_distillation() -> None:
    exits, y = _exits()
    teacher = torch.randn(8, 10)
    with_teacher = exit_loss(exits, y, teacher, 0.0, T, 0.5)
    assert exit_loss(exits, y, teacher, 0.0, T, 0.5, self_distill=True).item() == pytest.approx(with_teacher.item())
