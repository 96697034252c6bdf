"""The multi-scale cascade: a tuple between stages, exits that cost only their stage, a cascade of
logits, and what the serving side needs (exact batch-norm folding, a checkpoint that round-trips)."""

from __future__ import annotations

import itertools

import pytest
import torch

from elastic_anytime.models.cascade import DEFAULT_STAGES, multiscale_cascade
from elastic_anytime.models.checkpoint import build_metadata, load_checkpoint, save_checkpoint
from elastic_anytime.models.cost import exit_costs
from elastic_anytime.models.registry import create_model
from elastic_anytime.service.engine.runner import fold_batch_norms

SMALL = {"stem": [4, 8], "stages": [[8, 8, 16], [4, 8, 16], [8, 16, 16]], "depth": 2}


def test_each_stage_hands_on_maps_at_three_scales_and_its_logits() -> None:
    model = multiscale_cascade(num_classes=5, **SMALL).eval()
    state = torch.rand(2, 3, 32, 32)
    for k in range(model.num_exits):
        state = model.run_stage(k, state)
        m16, m8, m4, logits = state
        width = SMALL["stages"][k]
        assert m16.shape == (2, width[0], 16, 16) and m8.shape == (2, width[1], 8, 8)
        assert m4.shape == (2, width[2], 4, 4)
        assert torch.equal(model.run_exit(k, state), logits) and logits.shape == (2, 5)


def test_later_exits_read_the_earlier_exits_logits() -> None:
    """Zero Time Waste's cascade: changing exit 0's logits changes exit 1's."""
    model = multiscale_cascade(num_classes=5, **SMALL).eval()
    with torch.no_grad():
        state = model.run_stage(0, torch.rand(1, 3, 32, 32))
        nudged = (*state[:3], state[3] + 5.0)
        assert not torch.allclose(model.run_stage(1, state)[3], model.run_stage(1, nudged)[3])


def test_the_exit_heads_are_free_so_anytime_cost_equals_direct_cost() -> None:
    costs = exit_costs(multiscale_cascade(num_classes=10, **SMALL), (3, 32, 32))
    assert all(c.anytime_mflops == pytest.approx(c.mflops) for c in costs)
    assert all(b.mflops > a.mflops for a, b in itertools.pairwise(costs))


def test_default_sizes_sit_under_the_issue_budgets() -> None:
    """The shipped recipe's exits: <= 50, <= 100 MFLOPs for the first two, <= 300 in all."""
    costs = [c.anytime_mflops for c in exit_costs(multiscale_cascade(num_classes=10), (3, 32, 32))]
    assert len(costs) == len(DEFAULT_STAGES)
    assert costs[0] <= 50 and costs[1] <= 100 and costs[-1] <= 300, costs


def test_batch_norms_fold_exactly() -> None:
    model = multiscale_cascade(num_classes=10, **SMALL)
    with torch.no_grad():  # non-trivial statistics, so a wrong fold would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    model.eval()
    folded = fold_batch_norms(model, (3, 32, 32))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), folded(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip(tmp_path) -> None:
    args = {"num_classes": 3, **SMALL}
    model = create_model("multiscale_cascade", **args).eval()
    meta = build_metadata(model, "multiscale_cascade", args, ["a", "b", "c"], (3, 32, 32), [0.5] * 3, [0.25] * 3)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ckpt", model, meta))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.model(x), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"exits": "final"}, "exits must be 'all'"),
    ({"head": "conv"}, "head 'linear'"),
    ({"stages": [[8, 8]]}, "w16, w8, w4"),
    ({"stem": [4]}, "two positive"),
    ({"depth": 0}, "depth must be >= 1"),
    ({"widths": 3}, "bad arguments"),
])  # fmt: skip
def test_bad_arguments_are_refused_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("multiscale_cascade", **kwargs)
