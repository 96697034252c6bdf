"""Exit placement (`select_exit_blocks`) and how `from_blocks` groups blocks into stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elastic_anytime.models.elastic import Block, ElasticNet, select_exit_blocks
from elastic_anytime.models.registry import create_model


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", [0, 1, 2, 3, 4]),
        ("final", [4]),
        (1, [0, 1, 2, 3, 4]),
        (2, [1, 3, 4]),  # every 2nd block, plus the last
        (3, [2, 4]),
        (5, [4]),
        (9, [4]),  # n beyond the depth: only the final exit
        ([3, 1], [1, 3, 4]),  # sorted, last added
        ((0, 0, 4), [0, 4]),  # duplicates dropped
        ([4], [4]),
    ],
)
def test_select_exit_blocks(spec: object, expected: list[int]) -> None:
    assert select_exit_blocks(5, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (0, "n >= 1"),
        (-2, "n >= 1"),
        ([5], "outside 0..4"),
        ([-1, 2], "outside 0..4"),
        ("some", "must be 'all', 'final'"),
        (True, "must be 'all', 'final'"),
        (2.0, "must be 'all', 'final'"),
        (None, "must be 'all', 'final'"),
    ],
)
def test_select_exit_blocks_rejects_bad_specs(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_exit_blocks(5, spec)


def test_select_exit_blocks_needs_a_block() -> None:
    with pytest.raises(ValueError, match="at least one block"):
        select_exit_blocks(0, "all")


def _linear_blocks(n: int) -> list[Block]:
    return [Block(f"b{i}", nn.Conv2d(2, 2, 1), 2) for i in range(n)]


def _head(channels: int, is_final: bool) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 3))


def test_from_blocks_groups_blocks_into_stages_ending_at_exits() -> None:
    blocks = _linear_blocks(5)
    net = ElasticNet.from_blocks(nn.Identity(), blocks, [1, 2], _head)
    assert net.num_exits == 3
    assert net.exit_names == ["b1", "b2", "b4"]
    stage_convs = [[m for m in stage.modules() if isinstance(m, nn.Conv2d)] for stage in net.stages]
    assert stage_convs == [
        [blocks[0].module, blocks[1].module],
        [blocks[2].module],
        [blocks[3].module, blocks[4].module],
    ]


def test_fewer_exits_compute_the_same_final_logits() -> None:
    """Exit placement changes where heads sit, never what the backbone computes."""
    torch.manual_seed(0)
    every = create_model("cifar_resnet20", exits="all").eval()
    final_only = create_model("cifar_resnet20", exits="final").eval()
    assert final_only.num_exits == 1
    assert final_only.exit_names == [every.exit_names[-1]]
    state = final_only.state_dict()
    source = every.state_dict()
    # Map the final-only model's grouped stage names back onto the per-block stages.
    blocks = [k for k in source if k.startswith("stages.")]
    grouped = [k for k in state if k.startswith("stages.")]
    assert len(blocks) == len(grouped)
    for mine, theirs in zip(grouped, blocks, strict=True):
        state[mine] = source[theirs]
    last = every.num_exits - 1
    for key in [k for k in state if k.startswith("exits.0.")]:
        state[key] = source[key.replace("exits.0.", f"exits.{last}.")]
    state.update({k: v for k, v in source.items() if k.startswith("stem.")})
    final_only.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(final_only(x)[0], every(x)[-1])


def test_every_nth_exit_on_a_real_model() -> None:
    model = create_model("cifar_resnet20", exits=3)
    assert model.exit_names == ["stage1.block2", "stage2.block2", "stage3.block2"]


def test_elastic_net_rejects_mismatched_parts() -> None:
    with pytest.raises(ValueError, match="equal length"):
        ElasticNet(nn.Identity(), [nn.Identity()], [], [])
    with pytest.raises(ValueError, match="non-empty"):
        ElasticNet(nn.Identity(), [], [], [])


def test_training_forward_returns_every_exit_with_gradients() -> None:
    model = create_model("tiny").train()
    outputs = model(torch.randn(2, 3, 32, 32))
    sum(o.sum() for o in outputs).backward()
    assert all(p.grad is not None for p in model.parameters())
