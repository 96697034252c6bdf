"""The guardrail's baseline: the agreement table drawn the way live samples are, and its optional field in
elastic.json (validated; a checkpoint without it still loads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_anytime.models.checkpoint import (
    META_FILE,
    CheckpointError,
    build_metadata,
    load_checkpoint,
    save_checkpoint,
)
from elastic_anytime.models.registry import create_model
from elastic_anytime.training.agreement import MIN_IMAGES, ExitOutputs, agreement_table, exit_outputs, write_agreement

CLASSES = ["cat", "dog", "emu"]


def _outputs(predictions: list[list[int]], confidence: list[list[float]]) -> ExitOutputs:
    return ExitOutputs(torch.tensor(predictions), torch.tensor(confidence))


def test_all_images_row_is_plain_agreement_with_the_final_exit() -> None:
    outputs = _outputs([[0, 1, 2, 0], [0, 1, 1, 1], [0, 1, 1, 2]], [[0.2] * 4, [0.2] * 4, [0.9] * 4])
    table = agreement_table(outputs, thresholds=(0.5,))
    assert [e["all"] for e in table["exits"]] == [0.5, 0.75, 1.0]
    assert table["images"] == 4 and table["thresholds"] == [0.5]


def test_confident_row_counts_only_images_whose_first_confident_exit_is_this_one() -> None:
    n = MIN_IMAGES
    # first half: confident already at exit 0 (and agreeing); second half: only at exit 1, where half agree
    conf0 = [0.9] * n + [0.1] * n
    conf1 = [0.9] * (2 * n)
    pred0 = [1] * n + [0] * n
    pred1 = [1] * n + [2] * (n // 2) + [0] * (n - n // 2)
    final = [1] * n + [2] * n
    table = agreement_table(_outputs([pred0, pred1, final], [conf0, conf1, [1.0] * (2 * n)]), thresholds=(0.5,))
    exit0, exit1, _ = table["exits"]
    assert exit0["confident"] == [1.0] and exit0["confident_images"] == [n]
    assert exit1["confident"] == [0.5] and exit1["confident_images"] == [n]  # the first half stopped at exit 0


def test_a_row_on_too_few_images_is_left_out() -> None:
    outputs = _outputs([[0] * 10, [0] * 10], [[0.99] * 10, [0.99] * 10])
    exit0 = agreement_table(outputs, thresholds=(0.5, 0.9))["exits"][0]
    assert exit0["confident"] == [None, None] and exit0["confident_images"] == [10, 10]


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    model = create_model("tiny", num_classes=len(CLASSES)).eval()
    meta = build_metadata(model, "tiny", {"num_classes": len(CLASSES)}, CLASSES, (3, 32, 32), [0.5] * 3, [0.25] * 3)
    return save_checkpoint(tmp_path / "ckpt", model, meta)


def test_written_baseline_adds_one_field_and_the_checkpoint_still_loads(tiny_checkpoint: Path) -> None:
    before = json.loads((tiny_checkpoint / META_FILE).read_text())
    assert "agreement" not in load_checkpoint(tiny_checkpoint).meta  # made before the guardrail: no baseline
    ckpt = load_checkpoint(tiny_checkpoint)
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8)
    outputs = exit_outputs(ckpt.model, images, [0.5] * 3, [0.25] * 3, [1.0] * ckpt.model.num_exits, batch_size=25)
    assert outputs.predictions.shape == (ckpt.model.num_exits, 60)
    write_agreement(tiny_checkpoint, agreement_table(outputs), {"data": "noise", "split": "test", "limit": 60})
    after = json.loads((tiny_checkpoint / META_FILE).read_text())
    assert {k: v for k, v in after.items() if k != "agreement"} == before
    assert after["agreement"]["data"] == "noise" and after["agreement"]["exits"][-1]["all"] == 1.0
    assert load_checkpoint(tiny_checkpoint).meta["agreement"] == after["agreement"]  # hash still matches


def _with_agreement(directory: Path, agreement: Any) -> None:
    path = directory / META_FILE
    meta = json.loads(path.read_text())
    meta["agreement"] = agreement
    path.write_text(json.dumps(meta))


def _valid(num_exits: int) -> dict[str, Any]:
    return {"thresholds": [0.5, 0.9], "exits": [{"all": 0.8, "confident": [0.9, None]} for _ in range(num_exits)]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(thresholds=[0.9, 0.5]), "increasing"),
        (lambda a: a.update(thresholds=[0.5, 1.5]), "(0, 1]"),
        (lambda a: a["exits"].pop(), "one entry per exit"),
        (lambda a: a["exits"][0].update(all=1.2), "exit 0 needs 'all'"),
        (lambda a: a["exits"][1].update(confident=[0.9]), "exit 1 needs"),
        (lambda a: a["exits"][0].update(confident=["high", None]), "exit 0 needs"),
    ],
)
def test_a_malformed_baseline_is_refused_with_a_clear_error(tiny_checkpoint: Path, change: Any, message: str) -> None:
    agreement = _valid(load_checkpoint(tiny_checkpoint).model.num_exits)
    _with_agreement(tiny_checkpoint, agreement)
    load_checkpoint(tiny_checkpoint)  # the valid one loads
    change(agreement)
    _with_agreement(tiny_checkpoint, agreement)
    with pytest.raises(CheckpointError, match="agreement") as info:
        load_checkpoint(tiny_checkpoint)
    assert message in str(info.value)


def test_eval_write_agreement_stores_only_the_baseline(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from elastic_anytime.elastic_cli import main as cli

    monkeypatch.setenv("ELASTIC_CACHE", str(tmp_path / "cache"))
    generator = torch.Generator().manual_seed(0)
    for name in CLASSES:
        folder = tmp_path / "data" / "test" / name
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)
            Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    before = json.loads((tiny_checkpoint / META_FILE).read_text())
    assert cli.main(["eval", str(tiny_checkpoint), "--data", str(tmp_path / "data"), "--write-agreement"]) == 0
    after = json.loads((tiny_checkpoint / META_FILE).read_text())
    assert {k: v for k, v in after.items() if k != "agreement"} == before
    assert after["agreement"]["images"] == 12 and after["agreement"]["split"] == "test"
