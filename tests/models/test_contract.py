"""One contract over every registered model: exits, early stopping, cost and metadata.

Models are built once per module (with 7 classes, so a head hard-wired to 10 would show) and
checked at 32×32, batch 2, eval mode. Models with many exits are checked on a spread of exits.
Every model runs with the default linear heads; the shipped configuration (resnet9 + conv heads)
and the tiny model also run with conv heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from elastic_anytime.models.checkpoint import build_metadata
from elastic_anytime.models.cost import exit_costs
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import available_backbones, available_models, create_model

NUM_CLASSES = 7
INPUT_SIZE = (3, 32, 32)
MAX_CHECKED_EXITS = 20


@dataclass
class Case:
    name: str
    args: dict
    model: ElasticNet
    x: torch.Tensor
    outputs: list[torch.Tensor]
    meta: dict
    checked: list[int]


def _spread(num_exits: int) -> list[int]:
    """All exits of small models; first, last and evenly spaced ones of big models."""
    if num_exits <= MAX_CHECKED_EXITS:
        return list(range(num_exits))
    step = (num_exits - 1) / (MAX_CHECKED_EXITS - 1)
    return sorted({round(i * step) for i in range(MAX_CHECKED_EXITS)})


CASES = [(name, "linear") for name in available_models()] + [("tiny", "conv"), ("resnet9", "conv")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{name}-{head}" for name, head in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    name, head = request.param
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, head=head).eval()
    x = torch.randn(2, *INPUT_SIZE)
    with torch.no_grad():
        outputs = model(x)
    classes = [f"c{i}" for i in range(NUM_CLASSES)]
    args = {"num_classes": NUM_CLASSES, "head": head}
    meta = build_metadata(model, name, args, classes, INPUT_SIZE, [0.5] * 3, [0.25] * 3)
    return Case(name, args, model, x, outputs, meta, _spread(model.num_exits))


def test_registry_has_every_backbone_of_the_issue() -> None:
    expected = {"tiny", "cifar_resnet20", "cifar_resnet56", "resnet9", "resnet18", "resnet50"}
    expected |= {"mobilenetv2", "densenet121", "vgg16_bn"}
    assert expected <= set(available_models())


def test_every_exit_gives_logits_of_the_right_shape(case: Case) -> None:
    assert case.model.num_exits >= 2, "every backbone must offer early exits"
    assert len(case.outputs) == case.model.num_exits == len(case.model.exit_names)
    for k, logits in enumerate(case.outputs):
        assert logits.shape == (2, NUM_CLASSES), f"exit {k}"
        assert torch.isfinite(logits).all(), f"exit {k}"


def test_forward_until_equals_the_full_forward(case: Case) -> None:
    with torch.no_grad():
        for k in case.checked:
            torch.testing.assert_close(case.model.forward_until(case.x, k), case.outputs[k], rtol=1e-5, atol=1e-6)


def test_stepwise_run_equals_the_full_forward(case: Case) -> None:
    """The serving engine's path: run_stage then run_exit, one stage at a time."""
    features = case.x
    with torch.no_grad():
        for k in range(case.model.num_exits):
            features = case.model.run_stage(k, features)
            if k in case.checked:
                torch.testing.assert_close(case.model.run_exit(k, features), case.outputs[k], rtol=1e-5, atol=1e-6)


def test_stopping_early_skips_later_stages_and_heads(case: Case) -> None:
    model = case.model
    calls = {"stem": 0, "stages": [0] * model.num_exits, "exits": [0] * model.num_exits}

    def counter(kind: str, index: int | None = None):
        def hook(*_: object) -> None:
            if index is None:
                calls[kind] += 1
            else:
                calls[kind][index] += 1

        return hook

    handles = [model.stem.register_forward_hook(counter("stem"))]
    handles += [m.register_forward_hook(counter("stages", i)) for i, m in enumerate(model.stages)]
    handles += [m.register_forward_hook(counter("exits", i)) for i, m in enumerate(model.exits)]
    try:
        for k in case.checked:
            calls.update(stem=0, stages=[0] * model.num_exits, exits=[0] * model.num_exits)
            with torch.no_grad():
                model.forward_until(case.x, k)
            assert calls["stem"] == 1
            assert calls["stages"] == [1] * (k + 1) + [0] * (model.num_exits - k - 1), f"stop at exit {k}"
            assert calls["exits"] == [int(i == k) for i in range(model.num_exits)], f"stop at exit {k}"
    finally:
        for handle in handles:
            handle.remove()


def test_forward_until_rejects_exits_out_of_range(case: Case) -> None:
    for bad in (-1, case.model.num_exits):
        with pytest.raises(IndexError):
            case.model.forward_until(case.x, bad)


def test_mflops_strictly_increase_along_exits(case: Case) -> None:
    for key in ("mflops", "anytime_mflops"):
        values = [e[key] for e in case.meta["exits"]]
        assert all(b > a for a, b in pairwise(values)), f"{key}: {values}"
        assert values[0] > 0


def test_metadata_describes_the_model(case: Case) -> None:
    meta, model = case.meta, case.model
    assert meta["arch"] == {"name": case.name, "args": case.args}
    assert [e["index"] for e in meta["exits"]] == list(range(model.num_exits))
    assert [e["name"] for e in meta["exits"]] == model.exit_names
    assert len(set(model.exit_names)) == model.num_exits, "exit names must be unique"
    assert all(e["accuracy"] is None for e in meta["exits"])


def test_metadata_params_match_a_recount(case: Case) -> None:
    """Recount by parameter name: stem, stages 0..k and head k."""
    sizes = {name: p.numel() for name, p in case.model.named_parameters()}

    def path_params(k: int) -> int:
        prefixes = ("stem.", *(f"stages.{i}." for i in range(k + 1)), f"exits.{k}.")
        return sum(n for name, n in sizes.items() if name.startswith(prefixes))

    exits = case.meta["exits"]
    for k in case.checked:
        assert exits[k]["params"] == path_params(k), f"exit {k}"
    other_heads = sum(
        n for name, n in sizes.items() if name.startswith("exits.") and not name.startswith(f"exits.{len(exits) - 1}.")
    )
    assert exits[-1]["params"] + other_heads == sum(sizes.values())


def test_metadata_mflops_match_a_recount(case: Case) -> None:
    """Recount with the FLOP counter around forward_until and forward (a different path from cost.py)."""
    image = torch.randn(1, *INPUT_SIZE)
    exits = case.meta["exits"]
    with torch.no_grad():
        for k in case.checked:
            with FlopCounterMode(display=False) as counter:
                case.model.forward_until(image, k)
            assert exits[k]["mflops"] == pytest.approx(counter.get_total_flops() / 1e6, abs=1e-3), f"exit {k}"
        with FlopCounterMode(display=False) as counter:
            case.model(image)
    assert exits[-1]["anytime_mflops"] == pytest.approx(counter.get_total_flops() / 1e6, abs=1e-3)


@pytest.mark.parametrize("name", available_backbones())
def test_anytime_cost_increases_with_conv_heads(name: str) -> None:
    """A stage-by-stage run pays every head on the way, so its cost must grow exit by exit."""
    model = create_model(name, num_classes=NUM_CLASSES, head="conv")
    values = [c.anytime_mflops for c in exit_costs(model, INPUT_SIZE)]
    assert all(b > a for a, b in pairwise(values)), values
