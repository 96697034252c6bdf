"""Evaluation pieces: per-exit scores against a hand count, test data prepared the checkpoint's way
(size, class order), and the metadata write-back that leaves the weights' hash valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from elastic_anytime.models.checkpoint import META_FILE, build_metadata, load_checkpoint, read_metadata, save_checkpoint
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import create_model
from elastic_anytime.models.transforms import eval_transform
from elastic_anytime.training.evaluate import (
    ExitScores,
    checkpoint_test_data,
    evaluate,
    exits_report,
    format_report,
    write_accuracies,
)


class FixedLogits(nn.Module):
    """Logits read off the input: exit k predicts the class stored in pixel (0, k) of channel 0."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, 0, 0, self.k].round().long()
        return nn.functional.one_hot(cls, 3).float() * 4.0


def test_evaluate_counts_hits_and_confidence_per_exit() -> None:
    model = ElasticNet(nn.Identity(), [nn.Identity(), nn.Identity()], [FixedLogits(0), FixedLogits(1)], ["a", "b"])
    images = torch.zeros(5, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([0, 1, 2, 0, 1])  # exit 0 predicts these
    images[:, 0, 0, 1] = torch.tensor([0, 1, 2, 2, 2])  # exit 1 predicts these
    labels = torch.tensor([0, 1, 2, 2, 2])
    # mean 0 / std 1/255 turns pixel values back into the integers written above
    scores = evaluate(model, images, labels, [0, 0, 0], [1 / 255] * 3, batch_size=2)
    assert scores.accuracy == pytest.approx([3 / 5, 5 / 5])
    confidence = float(torch.tensor([4.0, 0, 0]).softmax(0)[0])
    assert scores.confidence == pytest.approx([confidence, confidence])
    assert scores.count == 5


def _png_folder(root: Path, classes: list[str], per_class: int = 4, size: int = 32) -> Path:
    rng = np.random.default_rng(3)
    for name in classes:
        (root / "test" / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "test" / name / f"{i}.png")
    return root


def test_test_data_takes_the_checkpoint_input_size_and_class_order(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path / "data", ["cat", "dog"])
    meta = {"input_size": [3, 48, 48], "classes": ["dog", "bird", "cat"]}
    data = checkpoint_test_data(meta, str(folder))
    assert data.images.shape == (8, 3, 48, 48) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [2] * 4 + [0] * 4  # cat → 2, dog → 0 in the checkpoint's order
    assert data.classes == ["dog", "bird", "cat"]
    # the same pixels serving would feed the model for that file
    pil = Image.open(folder / "test" / "cat" / "0.png")
    expected = eval_transform((3, 48, 48), (0, 0, 0), (1, 1, 1))(pil)
    assert torch.allclose(data.images[0].float() / 255, expected, atol=1 / 255 + 1e-6)


def test_test_data_refuses_a_dataset_with_other_classes(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path / "data", ["cat", "zebra"])
    with pytest.raises(ValueError, match=r"\['zebra'\] are not among the checkpoint's 2 classes"):
        checkpoint_test_data({"input_size": [3, 32, 32], "classes": ["cat", "dog"]}, str(folder))
    with pytest.raises(ValueError, match="expects 1-channel input"):
        checkpoint_test_data({"input_size": [1, 32, 32], "classes": ["cat", "zebra"]}, str(folder))


def test_limit_scores_a_fixed_subset(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path / "data", ["cat", "dog"], per_class=10)
    meta = {"input_size": [3, 32, 32], "classes": ["cat", "dog"]}
    a, b = checkpoint_test_data(meta, str(folder), limit=5), checkpoint_test_data(meta, str(folder), limit=5)
    assert len(a) == 5 and torch.equal(a.images, b.images)


def test_write_accuracies_keeps_the_weights_hash_valid(tmp_path: Path) -> None:
    model = create_model("tiny", num_classes=2)
    meta = build_metadata(model, "tiny", {"num_classes": 2}, ["cat", "dog"], (3, 32, 32), [0.5] * 3, [0.2] * 3)
    directory = save_checkpoint(tmp_path / "ckpt", model, meta)
    weights = (directory / "model.safetensors").read_bytes()
    sha = read_metadata(directory)["weights_sha256"]

    scores = ExitScores([0.25, 0.5, 0.8125], [0.4, 0.6, 0.9], 16)
    write_accuracies(directory, scores, {"data": "unit", "split": "test"})
    assert (directory / "model.safetensors").read_bytes() == weights
    reloaded = load_checkpoint(directory)  # validates the hash
    assert reloaded.meta["weights_sha256"] == sha
    assert [e["accuracy"] for e in reloaded.meta["exits"]] == [0.25, 0.5, 0.8125]
    assert reloaded.meta["evaluation"] == {"data": "unit", "split": "test", "images": 16, "confidence": [0.4, 0.6, 0.9]}
    assert not list(directory.glob("*.tmp"))
    with pytest.raises(ValueError, match="2 scores for 3 exits"):
        write_accuracies(directory, ExitScores([0.1, 0.2], [0.1, 0.2], 4), {})
    assert json.loads((directory / META_FILE).read_text())["exits"][0]["accuracy"] == 0.25  # unchanged on error


def test_report_rows_and_table() -> None:
    meta = {"exits": [{"index": 0, "name": "s1", "mflops": 2.0}, {"index": 1, "name": "s2", "mflops": 8.0}]}
    rows = exits_report(meta, ExitScores([0.5, 0.75], [0.6, 0.8], 4))
    assert [r["fraction"] for r in rows] == [0.25, 1.0]
    table = format_report(rows).splitlines()
    assert len(table) == 3 and "25.0%" in table[1] and "75.00%" in table[2]


def test_report_shows_the_anytime_cost_beside_the_direct_one() -> None:
    """A stage-by-stage run also pays the earlier heads: the table and the JSON rows show that cost too."""
    meta = {
        "exits": [
            {"index": 0, "name": "s1", "mflops": 2.0, "anytime_mflops": 2.0},
            {"index": 1, "name": "s2", "mflops": 8.0, "anytime_mflops": 8.5},
        ]
    }
    rows = exits_report(meta, ExitScores([0.5, 0.75], [0.6, 0.8], 4))
    assert [r["anytime_mflops"] for r in rows] == [2.0, 8.5]
    header, _, last = format_report(rows).splitlines()
    assert "anytime" in header and "8.50" in last and "8.00" in last
