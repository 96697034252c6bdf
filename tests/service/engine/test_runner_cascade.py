"""The serving runner on a network that passes a tuple between stages: rows leave every tensor of
the tuple together, partial head reads match the full batch, and per-exit temperatures soften the
confidences without changing the answer."""

from __future__ import annotations

import copy

import pytest
import torch

from elastic_anytime.models.checkpoint import Checkpoint, build_metadata
from elastic_anytime.models.registry import create_model
from elastic_anytime.service.engine.runner import ModelRunner

ARGS = {"num_classes": 4, "stem": [4, 8], "stages": [[8, 8, 16], [4, 8, 16], [8, 16, 16]], "depth": 1}


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    model = create_model("multiscale_cascade", **ARGS).eval()
    meta = build_metadata(model, "multiscale_cascade", ARGS, list("abcd"), (3, 32, 32), [0.5] * 3, [0.25] * 3)
    return Checkpoint(model=model, meta=meta)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stage_by_stage_with_rows_leaving_matches_the_whole_batch(checkpoint: Checkpoint, precision: str) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"), precision=precision)
    images = [torch.randn(3, 32, 32) for _ in range(4)]
    with torch.no_grad():
        reference = runner.model(runner.batch(images))
    features = runner.batch(images)
    rows = [0, 1, 2, 3]
    tolerance = 1e-4 if precision == "fp32" else 5e-2
    for k in range(runner.num_exits):
        features = runner.stage(k, features)
        probs, _, _ = runner.read_exit(k, features)
        expected = torch.softmax(reference[k][rows].float(), dim=1)
        torch.testing.assert_close(probs, expected, rtol=tolerance, atol=tolerance)
        rows = rows[1:]  # one request stops at each exit
        features = runner.select(features, list(range(1, len(rows) + 1)))
        assert all(t.shape[0] == len(rows) for t in features)


def test_a_partial_head_read_equals_the_same_rows_of_a_full_read(checkpoint: Checkpoint) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    features = runner.stage(0, runner.batch([torch.randn(3, 32, 32) for _ in range(3)]))
    full, _, _ = runner.read_exit(0, features)
    part, _, _ = runner.read_exit(0, features, [2, 0])
    torch.testing.assert_close(part, full[[2, 0]])


def test_exit_temperatures_soften_confidences_and_keep_the_answer(checkpoint: Checkpoint) -> None:
    hot = copy.deepcopy(checkpoint.meta)
    for entry in hot["exits"]:
        entry["temperature"] = 3.0
    plain = ModelRunner(checkpoint, torch.device("cpu"))
    calibrated = ModelRunner(Checkpoint(model=checkpoint.model, meta=hot), torch.device("cpu"))
    image = [torch.randn(3, 32, 32)]
    for k in range(plain.num_exits):
        a = plain.read_exit(k, _state(plain, image, k))
        b = calibrated.read_exit(k, _state(calibrated, image, k))
        assert a[2] == b[2] and b[1][0] < a[1][0]


def _state(runner: ModelRunner, images: list[torch.Tensor], exit_index: int):
    features = runner.batch(images)
    for k in range(exit_index + 1):
        features = runner.stage(k, features)
    return features
