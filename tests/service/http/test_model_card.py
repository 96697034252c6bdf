"""The front end's ModelCard (service.http.model_card, elastic.json alone, no torch) against the ModelRunner it
stands in for: the same description and the same preprocessed input on the shipped checkpoint; and its
copy of `models.checkpoint.read_metadata` refuses what that refuses, with the same words."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from elastic_anytime.models.checkpoint import CheckpointError, load_checkpoint, read_metadata
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint as pretrained_default
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.http.imaging import finish_image, open_image
from elastic_anytime.service.http.model_card import META_FILE, ModelCard, ModelCardError
from elastic_anytime.service.http.model_card import read_metadata as card_metadata

REPO = Path(__file__).resolve().parents[3]
SAMPLES = sorted((REPO / "service" / "http" / "static" / "samples").glob("*.jpg"))
SHIPPED = pretrained_default()


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(load_checkpoint(SHIPPED), torch.device("cpu"), precision="fp32")


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.read(SHIPPED)


def test_default_checkpoint_is_the_shipped_one() -> None:
    assert default_checkpoint() == pretrained_default()


def test_the_card_describes_the_model_as_the_runner_does(card: ModelCard, runner: ModelRunner) -> None:
    assert card.meta == runner.meta and card.path == SHIPPED
    assert card.classes == runner.classes
    assert card.num_exits == runner.num_exits == len(runner.meta["exits"])
    assert card.exit_names == runner.exit_names == runner.model.exit_names
    assert card.exit_mflops == runner.exit_mflops
    assert card.temperatures == runner.temperatures
    assert card.input_size == runner.input_size
    assert (card.channels, card.min_side) == (runner.channels, runner.min_side)


def _images() -> list[tuple[str, Image.Image]]:
    """The demo's real JPEGs at the model's size, and the same photos larger and not square (the resize path)."""
    assert SAMPLES, "service/http/static/samples has the demo's JPEGs"
    found = []
    for path in SAMPLES:
        image = open_image(path.read_bytes(), 10_000_000)
        found.append((path.name, image))
        found.append((f"{path.name} 97x61", image.convert("RGB").resize((97, 61), Image.Resampling.BICUBIC)))
    return found


@pytest.mark.parametrize(("name", "image"), _images(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_card_preprocesses_bit_for_bit_as_the_runner(
    card: ModelCard, runner: ModelRunner, name: str, image: Image.Image
) -> None:
    # as ServiceState.prepare does: the image in the model's colour mode first
    finished = finish_image(image.copy(), channels=card.channels, min_side=card.min_side)
    ours = card.preprocess(finished.copy())
    theirs = runner.preprocess(finished.copy())
    assert ours.dtype == theirs.dtype == np.float32 and ours.shape == theirs.shape == card.input_size
    assert ours.tobytes() == theirs.tobytes(), name


# -- broken elastic.json: the card refuses what read_metadata refuses, with the same message ----------------


def _set(*keys: Any, value: Any) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _drop(*keys: Any) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        target = meta
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


BROKEN_META: dict[str, Callable[[dict], None]] = {
    "no-classes": _drop("classes"),
    "no-weights-hash": _drop("weights_sha256"),
    "schema-2": _set("schema_version", value=2),
    "arch-a-string": _set("arch", value="resnet9"),
    "arch-name-a-number": _set("arch", "name", value=9),
    "classes-empty": _set("classes", value=[]),
    "input-size-2d": _set("input_size", value=[32, 32]),
    "input-size-zero": _set("input_size", value=[3, 0, 32]),
    "input-size-float": _set("input_size", value=[3, 32.0, 32]),
    "mean-per-channel": _set("mean", value=[0.5, 0.5]),
    "std-zero": _set("std", value=[0.2, 0.0, 0.2]),
    "std-a-string": _set("std", value=[0.2, "0.2", 0.2]),
    "exits-empty": _set("exits", value=[]),
    "exit-not-an-object": _set("exits", 1, value=[1]),
    "exit-name-missing": _drop("exits", 2, "name"),
    "exit-mflops-bool": _set("exits", 0, "mflops", value=True),
    "exit-out-of-order": _set("exits", 1, "index", value=3),
    "exit-accuracy-above-1": _set("exits", 0, "accuracy", value=1.5),
    "exit-temperature-zero": _set("exits", 0, "temperature", value=0),
    "agreement-a-list": _set("agreement", value=[]),
    "agreement-thresholds-unsorted": _set("agreement", "thresholds", value=[0.9, 0.5, 0.6, 0.7, 0.8, 0.95]),
    "agreement-one-exit-short": _drop("agreement", "exits", 4),
    "agreement-all-missing": _drop("agreement", "exits", 0, "all"),
    "agreement-row-short": _set("agreement", "exits", 1, "confident", value=[0.9]),
}


def _write(directory: Path, meta: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def _both_refuse(directory: Path) -> str:
    with pytest.raises(CheckpointError) as theirs:
        read_metadata(directory)
    with pytest.raises(ModelCardError) as ours:
        ModelCard.read(directory)
    assert str(ours.value) == str(theirs.value)
    return str(ours.value)


@pytest.mark.parametrize("name", list(BROKEN_META))
def test_a_broken_elastic_json_is_refused_as_read_metadata_refuses_it(tmp_path: Path, name: str) -> None:
    meta = copy.deepcopy(json.loads((SHIPPED / META_FILE).read_text()))
    BROKEN_META[name](meta)
    message = _both_refuse(_write(tmp_path / name, meta))
    assert str(tmp_path / name) in message  # says which file


def test_what_read_metadata_accepts_the_card_accepts(tmp_path: Path) -> None:
    meta = json.loads((SHIPPED / META_FILE).read_text())
    for key in ("agreement", "evaluation", "training", "dataset"):  # optional fields
        meta.pop(key)
    meta["exits"][0].pop("anytime_mflops")  # older checkpoints: exit_mflops falls back to mflops
    directory = _write(tmp_path / "lean", meta)
    assert card_metadata(directory) == read_metadata(directory)
    card = ModelCard.read(directory)
    assert card.exit_mflops[0] == meta["exits"][0]["mflops"] and card.meta.get("agreement") is None


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "absent", "checkpoint directory not found"),
        (lambda d: d, f"missing {META_FILE}"),
        (lambda d: (d / META_FILE).write_text("{not json") and d, "is not valid JSON"),
        (lambda d: (d / META_FILE).write_bytes(b'{"a": "\xff"}') and d, "is not valid JSON"),
        (lambda d: (d / META_FILE).write_text("[1, 2]") and d, "must hold a JSON object"),
        (lambda d: (d / META_FILE).write_text("{}") and d, "lacks required fields: schema_version, arch"),
    ],
    ids=["no-directory", "no-elastic-json", "not-json", "not-utf8", "an-array", "empty-object"],
)
def test_a_missing_or_unreadable_elastic_json_gives_a_clear_error(
    tmp_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    message = _both_refuse(make(tmp_path))
    assert words in message, message


def test_json_nested_too_deep_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelCardError, match="is not valid JSON"):
        ModelCard.read(tmp_path)
