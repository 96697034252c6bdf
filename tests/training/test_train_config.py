"""Config precedence: dataclass defaults < JSON/TOML file < command-line flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from elastic_anytime.training.config import TrainConfig, add_config_arguments, config_from_args


def _config(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_defaults_without_file_or_flags() -> None:
    assert _config() == TrainConfig()


TOML = """
model = "cifar_resnet20"
epochs = 7
lr = 1
loss = "uniform"
flip = false
exits = [2, 5]
[model_args]
width = 8
"""


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_file_sets_values_and_flags_override_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        values = {"model": "cifar_resnet20", "epochs": 7, "lr": 1, "loss": "uniform", "flip": False}
        path.write_text(json.dumps({**values, "exits": [2, 5], "model_args": {"width": 8}}))
    else:
        path.write_text(TOML)
    from_file = _config("--config", str(path))
    assert (from_file.model, from_file.epochs, from_file.lr, from_file.loss) == ("cifar_resnet20", 7, 1, "uniform")
    assert from_file.flip is False and from_file.model_args == {"width": 8}
    assert from_file.exits == "2,5" and from_file.exit_spec() == [2, 5]
    assert from_file.batch_size == TrainConfig().batch_size  # untouched fields keep the default

    cfg = _config(
        "--config", str(path), "--epochs", "3", "--flip", "yes", "--lr", "0.05", "--model-arg", "width=16",
        "--exits", "final",
    )  # fmt: skip
    assert (cfg.epochs, cfg.flip, cfg.lr, cfg.exits) == (3, True, 0.05, "final")
    assert cfg.model == "cifar_resnet20" and cfg.loss == "uniform"  # not overridden: the file's
    assert cfg.model_args == {"width": 16}


def test_model_args_merge_and_parse_json_values() -> None:
    cfg = _config("--model-arg", "width_mult=0.5", "--model-arg", "cifar_stem=false", "--model-arg", "name=abc")
    assert cfg.model_args == {"width_mult": 0.5, "cifar_stem": False, "name": "abc"}


@pytest.mark.parametrize(("exits", "spec"), [("all", "all"), ("final", "final"), ("3", 3), ("0,2,4", [0, 2, 4])])
def test_exit_specs(exits: str, spec: object) -> None:
    assert _config("--exits", exits).exit_spec() == spec


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"epochs": 2, "lr_max": 1}', "unknown config keys"),
        ('{"epochs": "2"}', "epochs must be int"),
        ('{"flip": 1}', "flip must be bool"),
        ('{"model_args": [1]}', "model_args must be"),
        ('{"loss": "mean"}', "loss must be one of"),
        ('{"exits": "some"}', "exits must be all, final"),
        ('{"batch_size": 0}', "batch_size must be >= 1"),
        ("[1, 2]", "must hold a table"),
        ("{not json", "Expecting property name"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        _config("--config", str(path))


def test_bad_flags_are_refused() -> None:
    with pytest.raises(SystemExit):
        _config("--flip", "maybe")
    with pytest.raises(SystemExit):
        _config("--model-arg", "width")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        _config("--optimizer", "lion")
