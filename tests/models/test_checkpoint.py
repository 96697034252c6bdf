"""Checkpoint save → load, and a clear CheckpointError for every way a checkpoint can be broken."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_anytime.models.checkpoint import (
    META_FILE,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    CheckpointError,
    build_metadata,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import create_model

CLASSES = ["cat", "dog", "emu"]
INPUT_SIZE = (3, 32, 32)
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _save(directory: Path, model: ElasticNet, arch: str, args: dict[str, Any], classes: list[str] = CLASSES) -> Path:
    meta = build_metadata(model, arch, args, classes, INPUT_SIZE, MEAN, STD, dataset="unit-test")
    return save_checkpoint(directory, model, meta)


def _trained_like(model: ElasticNet) -> ElasticNet:
    """Non-default BatchNorm statistics, so a round trip that dropped buffers would show."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *INPUT_SIZE))
    return model.eval()


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    model = _trained_like(create_model("tiny", num_classes=len(CLASSES), head="conv"))
    return _save(tmp_path / "ckpt", model, "tiny", {"num_classes": len(CLASSES), "head": "conv"})


def _edit_meta(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / META_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _load_error(directory: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(directory)
    return str(info.value)


def test_round_trip_gives_bit_identical_outputs(tmp_path: Path) -> None:
    model = _trained_like(create_model("tiny", num_classes=len(CLASSES), head="conv"))
    directory = _save(tmp_path / "ckpt", model, "tiny", {"num_classes": len(CLASSES), "head": "conv"})
    loaded = load_checkpoint(directory)
    assert not loaded.model.training
    assert loaded.classes == CLASSES
    assert loaded.path == directory
    x = torch.randn(2, *INPUT_SIZE)
    with torch.no_grad():
        for before, after in zip(model(x), loaded.model(x), strict=True):
            assert torch.equal(before, after)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_metadata_round_trips(tiny_dir: Path) -> None:
    meta = read_metadata(tiny_dir)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["arch"] == {"name": "tiny", "args": {"num_classes": 3, "head": "conv"}}
    assert meta["classes"] == CLASSES
    assert (meta["input_size"], meta["mean"], meta["std"]) == (list(INPUT_SIZE), MEAN, STD)
    assert meta["dataset"] == "unit-test"
    assert [e["name"] for e in meta["exits"]] == load_checkpoint(tiny_dir).model.exit_names
    assert len(meta["weights_sha256"]) == 64
    assert {"training", "code_version"} <= set(meta)


def test_weights_are_safetensors_not_pickle(tiny_dir: Path) -> None:
    header_length = int.from_bytes((tiny_dir / WEIGHTS_FILE).read_bytes()[:8], "little")
    header = json.loads((tiny_dir / WEIGHTS_FILE).read_bytes()[8 : 8 + header_length])
    assert "stem.0.0.weight" in header


def test_saving_again_overwrites_cleanly(tiny_dir: Path) -> None:
    model = create_model("tiny", num_classes=3, head="conv")
    _save(tiny_dir, model, "tiny", {"num_classes": 3, "head": "conv"})
    assert torch.equal(load_checkpoint(tiny_dir).model.stem[0][0].weight, model.stem[0][0].weight)


def test_missing_directory(tmp_path: Path) -> None:
    assert "checkpoint directory not found" in _load_error(tmp_path / "nowhere")


def test_missing_metadata(tiny_dir: Path) -> None:
    (tiny_dir / META_FILE).unlink()
    assert f"missing {META_FILE}" in _load_error(tiny_dir)


def test_missing_weights(tiny_dir: Path) -> None:
    (tiny_dir / WEIGHTS_FILE).unlink()
    assert f"missing {WEIGHTS_FILE}" in _load_error(tiny_dir)


@pytest.mark.parametrize("text", ["{not json", "", "\xff\xfe", "[1, 2]"])
def test_invalid_json(tiny_dir: Path, text: str) -> None:
    (tiny_dir / META_FILE).write_bytes(text.encode("latin-1"))
    message = _load_error(tiny_dir)
    assert "not valid JSON" in message or "must hold a JSON object" in message


def test_wrong_schema_version(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    assert f"schema version {SCHEMA_VERSION + 1}" in _load_error(tiny_dir)


@pytest.mark.parametrize(
    "field", ["schema_version", "arch", "classes", "input_size", "mean", "std", "exits", "weights_sha256"]
)
def test_missing_fields(tiny_dir: Path, field: str) -> None:
    _edit_meta(tiny_dir, lambda m: m.pop(field))
    assert f"lacks required fields: {field}" in _load_error(tiny_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(arch="tiny"), "'arch' must be"),
        (lambda m: m.update(classes=[]), "'classes' must be a non-empty list"),
        (lambda m: m.update(input_size=[3, 32]), "input_size must be [C, H, W]"),
        (lambda m: m.update(input_size="3x32x32"), "input_size must be [C, H, W]"),
        (lambda m: m.update(mean=[0.5, 0.5]), "mean must hold 3 numbers"),
        (lambda m: m.update(std=[0.2, 0.0, 0.2]), "std must be positive"),
        (lambda m: m.update(exits=[]), "'exits' must be a non-empty list"),
        (lambda m: m["exits"][1].pop("mflops"), "exit 1 needs 'mflops'"),
        (lambda m: m["exits"][0].update(params="many"), "exit 0 needs 'params'"),
        (lambda m: m["exits"][2].update(index=7), "exit 2 has index 7"),
        (lambda m: m["exits"][0].update(accuracy=93.1), "accuracy must be null or a fraction"),
        (lambda m: m["exits"][1].update(temperature=0), "exit 1 temperature must be a positive number"),
        (lambda m: m["exits"][1].update(temperature="warm"), "exit 1 temperature must be a positive number"),
        (lambda m: m["exits"].pop(), "lists 2 exits but the model has 3"),
        (lambda m: m["exits"][0].update(name="elsewhere"), "exit names"),
    ],
)
def test_malformed_metadata(tiny_dir: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    _edit_meta(tiny_dir, change)
    assert message in _load_error(tiny_dir)


def test_accuracy_may_be_filled_in_later(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: [e.update(accuracy=0.5) for e in m["exits"]])
    assert [e["accuracy"] for e in load_checkpoint(tiny_dir).meta["exits"]] == [0.5] * 3


def test_unknown_architecture(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: m["arch"].update(name="resnet1000"))
    assert "cannot rebuild the model: unknown model 'resnet1000'" in _load_error(tiny_dir)


def test_bad_constructor_arguments(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: m["arch"]["args"].update(depth=99))
    assert "cannot rebuild the model: bad arguments" in _load_error(tiny_dir)


def test_weights_of_another_width(tmp_path: Path) -> None:
    narrow = create_model("cifar_resnet20", num_classes=3, width=4)
    directory = _save(tmp_path / "ckpt", narrow, "cifar_resnet20", {"num_classes": 3, "width": 8})
    message = _load_error(directory)
    wide = create_model("cifar_resnet20", num_classes=3, width=8).state_dict()
    differing = sum(v.shape != wide[k].shape for k, v in narrow.state_dict().items())
    assert f"shape mismatch in {differing} tensors" in message
    assert "file (3, 4), model (3, 8)" in message


def test_classes_disagree_with_the_head_size(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: m.update(classes=["a", "b"]))
    assert "model has 3 outputs but the checkpoint lists 2 classes" in _load_error(tiny_dir)


def test_classes_disagree_with_the_weights_when_args_omit_num_classes(tiny_dir: Path) -> None:
    def change(meta: dict[str, Any]) -> None:
        meta["arch"]["args"].pop("num_classes")
        meta["classes"] = ["a", "b", "c", "d"]

    _edit_meta(tiny_dir, change)
    assert "exits.0.6.bias: file (3,), model (4,)" in _load_error(tiny_dir)


def test_weights_with_missing_or_extra_tensors(tiny_dir: Path) -> None:
    _edit_meta(tiny_dir, lambda m: m["arch"]["args"].update(head="linear"))
    assert "weights do not match the architecture" in _load_error(tiny_dir)


def test_truncated_weights(tiny_dir: Path) -> None:
    weights = tiny_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "corrupt or truncated" in _load_error(tiny_dir)


def test_truncated_weights_with_a_matching_hash(tiny_dir: Path) -> None:
    """Even if the recorded hash was recomputed, a cut-off file is refused by the reader."""
    import hashlib

    weights = tiny_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    _edit_meta(tiny_dir, lambda m: m.update(weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))
    assert "not a readable safetensors file" in _load_error(tiny_dir)


def test_corrupted_bytes(tiny_dir: Path) -> None:
    weights = tiny_dir / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-50] ^= 0xFF  # one flipped byte inside a tensor: the file still parses, the hash does not match
    weights.write_bytes(bytes(data))
    assert "corrupt or truncated: its SHA-256 does not match" in _load_error(tiny_dir)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path: Path, value: float) -> None:
    model = create_model("tiny", num_classes=3)
    with torch.no_grad():
        model.exits[1][-1].weight[0, 0] = value
    directory = _save(tmp_path / "ckpt", model, "tiny", {"num_classes": 3})
    assert "non-finite values (NaN/inf) in exits.1.3.weight" in _load_error(directory)


def test_pretrained_flag_never_downloads_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model trained from torchvision weights stores pretrained=True; loading must use the file."""
    model = create_model("mobilenetv2", num_classes=3)
    directory = _save(tmp_path / "ckpt", model, "mobilenetv2", {"num_classes": 3, "pretrained": True})
    # Anything that tried to fetch ImageNet weights would read this unreadable cache entry and fail.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "mobilenet_v2-7ebf99e0.pth").write_bytes(b"not weights")
    loaded = load_checkpoint(directory)
    assert torch.equal(loaded.model.stem[0].weight, model.stem[0].weight)


def test_read_metadata_does_not_need_the_weights(tiny_dir: Path) -> None:
    (tiny_dir / WEIGHTS_FILE).unlink()
    assert read_metadata(tiny_dir)["classes"] == CLASSES


def test_errors_are_value_errors_for_callers_that_map_them_to_4xx() -> None:
    assert issubclass(CheckpointError, ValueError)
