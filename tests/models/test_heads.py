"""Exit heads: the paper's linear head, the conv head for early exits, and the factory's choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elastic_anytime.models.heads import ConvHead, LinearHead, head_factory
from elastic_anytime.models.registry import create_model


@pytest.mark.parametrize("size", [1, 4, 9])
def test_linear_head_pools_any_resolution_to_logits(size: int) -> None:
    head = LinearHead(12, 5).eval()
    assert head(torch.randn(3, 12, size, size)).shape == (3, 5)
    assert [type(m) for m in head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear]


@pytest.mark.parametrize("size", [1, 2, 8])
def test_conv_head_gives_logits_at_any_resolution(size: int) -> None:
    head = ConvHead(64, 10).eval()
    assert head(torch.randn(2, 64, size, size)).shape == (2, 10)


def test_conv_head_width_defaults_to_half_the_channels_with_a_floor() -> None:
    assert ConvHead(64, 10)[0].out_channels == 32
    assert ConvHead(8, 10)[0].out_channels == 16
    assert ConvHead(64, 10, width=24)[0].out_channels == 24
    assert ConvHead(64, 10)[0].stride == (2, 2)


def test_dropout_is_active_in_training_only() -> None:
    head = LinearHead(16, 4, dropout=0.5)
    x = torch.randn(8, 16, 2, 2)
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    head.train()
    torch.manual_seed(1)
    first = head(x)
    assert not torch.equal(first, head(x))


def test_factory_gives_early_exits_the_chosen_head_and_the_final_exit_a_linear_one() -> None:
    make = head_factory(10, "conv", dropout=0.1, head_width=8)
    early, final = make(32, False), make(32, True)
    assert isinstance(early, ConvHead) and early[0].out_channels == 8
    assert isinstance(final, LinearHead)
    assert isinstance(head_factory(10)(32, False), LinearHead)


def test_factory_rejects_unknown_heads() -> None:
    with pytest.raises(ValueError, match="head must be one of"):
        head_factory(10, "mlp")


def test_models_use_the_requested_heads() -> None:
    model = create_model("tiny", head="conv", num_classes=3)
    assert [type(h) for h in model.exits] == [ConvHead, ConvHead, LinearHead]
    assert all(h[-1].out_features == 3 for h in model.exits)
