"""The training loop on a tiny generated ImageFolder: a step lowers the loss, a run writes a
loadable checkpoint whose metadata matches a fresh evaluation, the schedule has the stated shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.models.registry import create_model
from elastic_anytime.training.config import TrainConfig
from elastic_anytime.training.data import load_split, mean_std
from elastic_anytime.training.evaluate import evaluate
from elastic_anytime.training.losses import elastic_loss
from elastic_anytime.training.train import lr_at, make_optimizer, train


def _cfg(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values = {
        "model": "tiny",
        "data": str(data),
        "out": str(out),
        "epochs": 3,
        "batch_size": 16,
        "lr": 0.1,
        "precision": "fp32",
        "threads": 1,
        "progress": False,
        "loss": "uniform",
    }
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("loss", ["uniform", "weighted", "distill"])
def test_one_step_lowers_the_loss(image_folder: Path, loss: str) -> None:
    data = load_split(str(image_folder), "train")
    mean, std = mean_std(str(image_folder), data)
    x = (data.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model = create_model("tiny", num_classes=3)
    opt = make_optimizer(model, TrainConfig(lr=0.05))
    before = elastic_loss(model(x), data.labels, loss)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = elastic_loss(model(x), data.labels, loss)
    assert after.item() < before.item()


def test_run_writes_checkpoint_metrics_and_plot(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    checkpoint = train(_cfg(image_folder, out, precision="auto", eval_every=2))  # auto = bf16 on CPU
    assert checkpoint == out / "checkpoint"
    assert sorted(p.name for p in out.iterdir()) == ["anytime.png", "checkpoint", "metrics.json", "state"]
    assert (out / "anytime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert ["test_accuracy" in r for r in history] == [False, True, True]  # every 2nd, and the last
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    assert meta["classes"] == ["blue", "green", "red"] and meta["input_size"] == [3, 32, 32]
    assert meta["arch"] == {
        "name": "tiny",
        "args": {"num_classes": 3, "exits": "all", "head": "linear", "dropout": 0.0},
    }
    assert meta["training"]["epochs"] == 3 and meta["dataset"] == image_folder.name
    # what the checkpoint claims is what a fresh fp32 evaluation of its weights measures
    test = load_split(str(image_folder), "test")
    scores = evaluate(ckpt.model, test.images, test.labels, meta["mean"], meta["std"])
    assert [e["accuracy"] for e in meta["exits"]] == pytest.approx(scores.accuracy)
    assert history[-1]["test_accuracy"] == pytest.approx(scores.accuracy)
    assert metrics["final"] == meta["exits"]
    assert max(scores.accuracy) > 0.5  # three colour classes: far above chance after 9 steps


def test_baseline_has_only_the_final_exit(image_folder: Path, tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "base", exits="final", epochs=1))
    ckpt = load_checkpoint(tmp_path / "base" / "checkpoint")
    assert ckpt.model.num_exits == 1 and ckpt.meta["arch"]["args"]["exits"] == "final"
    assert len(ckpt.meta["exits"]) == 1


def test_limits_and_channels_last_off(image_folder: Path, tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "small", epochs=1, limit_train=20, limit_test=7, channels_last=False))
    meta = load_checkpoint(tmp_path / "small" / "checkpoint").meta
    assert meta["evaluation"]["images"] == 7
    history = json.loads((tmp_path / "small" / "metrics.json").read_text())["history"]
    # train accuracies count hits over the 20 images seen (steps of 16 and 4)
    assert all(20 * a == pytest.approx(round(20 * a)) for a in history[0]["train_accuracy"])


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_lr_warms_up_linearly_then_decays_to_zero(schedule: str) -> None:
    cfg = TrainConfig(lr=0.4, warmup=0.25, schedule=schedule)
    lrs = [lr_at(step, 100, cfg) for step in range(100)]
    assert lrs[0] == pytest.approx(0.4 / 25) and lrs[24] == pytest.approx(0.4)
    assert lrs[:25] == sorted(lrs[:25]) and lrs[25:] == sorted(lrs[25:], reverse=True)
    assert lrs[-1] < 0.02 and max(lrs) == pytest.approx(0.4)
    middle = lrs[25 + 75 // 2]  # halfway through the decay: both schedules are at half the peak
    assert middle == pytest.approx(0.2, abs=0.01)


def test_adamw_and_no_weight_decay_on_norms_and_biases() -> None:
    model = create_model("tiny")
    opt = make_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in plain["params"])
