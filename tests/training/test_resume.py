"""Resume: a run stopped after epoch 1 of 2 and resumed ends where an uninterrupted run ends
(history, epoch counter, and — CPU kernels being deterministic — the very same weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from elastic_anytime.training import train as train_module
from elastic_anytime.training.config import TrainConfig
from elastic_anytime.training.train import train


class PreemptedError(Exception):
    """Stands in for the machine going away right after a state save."""


def _cfg(data: Path, out: Path, **overrides: Any) -> TrainConfig:
    values = {
        "model": "tiny",
        "data": str(data),
        "out": str(out),
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.1,
        "precision": "fp32",
        "threads": 1,
        "progress": False,
        "loss": "distill",
        "cutout": 8,  # every augmentation draws random numbers: the RNG state must be restored too
    }
    return TrainConfig(**{**values, **overrides})


def _preempt_after_first_save(monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = train_module.save_state

    def save_then_stop(directory: Path, model: Any, opt: Any, info: dict[str, Any]) -> None:
        real_save(directory, model, opt, info)  # the real save; then the "crash"
        raise PreemptedError

    monkeypatch.setattr(train_module, "save_state", save_then_stop)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_resume_continues_from_the_saved_epoch(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight"
    train(_cfg(image_folder, straight))

    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        _preempt_after_first_save(patch)
        with pytest.raises(PreemptedError):
            train(_cfg(image_folder, resumed))
    state = json.loads((resumed / "state" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert not (resumed / "checkpoint").exists()

    train(_cfg(image_folder, resumed, resume=True))
    a = json.loads((straight / "metrics.json").read_text())["history"]
    b = json.loads((resumed / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in b] == [1, 2]
    assert json.loads((resumed / "state" / "state.json").read_text())["epoch"] == 2
    assert [r["train_loss"] for r in b] == [r["train_loss"] for r in a]
    assert [r["test_accuracy"] for r in b] == [r["test_accuracy"] for r in a]
    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed weights differ from the uninterrupted run"


def test_resume_of_a_finished_run_only_rewrites_outputs(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(image_folder, out, epochs=1))
    before = _weights(out)
    train(_cfg(image_folder, out, epochs=1, resume=True))
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 1
    assert all(torch.equal(before[k], v) for k, v in _weights(out).items())


def test_resume_can_extend_a_schedule(image_folder: Path, tmp_path: Path) -> None:
    """Asking for more epochs continues the counter (the LR schedule is recomputed for the new total)."""
    out = tmp_path / "run"
    train(_cfg(image_folder, out, epochs=1))
    train(_cfg(image_folder, out, epochs=2, resume=True))
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_without_resume_a_run_starts_over(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(image_folder, out, epochs=1))
    train(_cfg(image_folder, out, epochs=1))
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 1


def test_optimizer_state_round_trips(image_folder: Path, tmp_path: Path) -> None:
    from elastic_anytime.models.registry import create_model

    model = create_model("tiny", num_classes=3)
    opt = train_module.make_optimizer(model, TrainConfig(optimizer="adamw"))
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    opt.step()
    train_module.save_state(tmp_path, model, opt, {"epoch": 5, "history": []})
    clone = create_model("tiny", num_classes=3)
    clone_opt = train_module.make_optimizer(clone, TrainConfig(optimizer="adamw"))
    assert train_module.load_state(tmp_path, clone, clone_opt) == {"epoch": 5, "history": []}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True))
    for key, value in opt.state_dict()["state"].items():
        restored = clone_opt.state_dict()["state"][key]
        assert all(torch.equal(value[name], restored[name]) for name in value)
