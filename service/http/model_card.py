"""What a front end knows of the served model, read from its checkpoint's `elastic.json` alone: no
weights, no torch.

With the process engine the model runs in the inference process; the server process only needs the
model's description (classes, exits and their costs, the input format) and its preprocessing, which
`service.engine.preprocess` does with Pillow and NumPy. A `ModelCard` offers the attributes of
`service.engine.runner.ModelRunner` that the front end reads, with the same values
(tests/service/test_model_card.py holds the two to each other on the shipped checkpoint).

`models.checkpoint.read_metadata` cannot be used here: importing anything under `models` imports
torch (models/__init__.py). `read_metadata` below makes the same checks with the same messages;
tests/service/test_model_card.py holds the two to each other on broken files. The weights and the
checks that need the model (exit names against the architecture, classes against the head size) are
the inference process's, which loads the checkpoint with `models.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from elastic_anytime.service.engine.preprocess import Preprocessor

META_FILE = "elastic.json"  # models.checkpoint.META_FILE
SCHEMA_VERSION = 1  # models.checkpoint.SCHEMA_VERSION
_REQUIRED = ("schema_version", "arch", "classes", "input_size", "mean", "std", "exits", "weights_sha256")
_EXIT_FIELDS = {"index": int, "name": str, "mflops": (int, float), "params": int}


class ModelCardError(ValueError):
    """A checkpoint's `elastic.json` is missing or malformed (models.checkpoint.CheckpointError, torch-free)."""


class ModelCard:
    """The served model as `elastic.json` describes it; the front end's stand-in for a `ModelRunner`."""

    def __init__(self, meta: dict[str, Any], path: Path | None = None) -> None:
        self.meta = meta
        self.path = path
        self.classes = list(meta["classes"])
        self.input_size = tuple(int(v) for v in meta["input_size"])
        self.num_exits = len(meta["exits"])
        # the names load_checkpoint checks against the architecture (ModelRunner.exit_names gives the model's)
        self.exit_names = [str(e["name"]) for e in meta["exits"]]
        # as ModelRunner: what a stage-by-stage run that reads every exit has spent once exit k answers
        self.exit_mflops = [float(e.get("anytime_mflops", e["mflops"])) for e in meta["exits"]]
        self.temperatures = [float(e.get("temperature", 1.0)) for e in meta["exits"]]
        self._preprocess = Preprocessor(self.input_size, meta["mean"], meta["std"])

    @classmethod
    def read(cls, directory: str | Path) -> ModelCard:
        """The card of the checkpoint in `directory`; ModelCardError if its elastic.json is missing or malformed."""
        return cls(read_metadata(directory), Path(directory))

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def min_side(self) -> int:
        return min(self.input_size[1:])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A decoded PIL image → the normalised (C, H, W) float32 array the model takes (as ModelRunner.preprocess)."""
        return self._preprocess(image)


@functools.cache
def default_checkpoint() -> Path:
    """`models.pretrained.default_checkpoint()`, without importing the `models` package (its __init__ imports
    torch): models/pretrained/__init__.py needs nothing but pathlib, so it is run on its own, found beside
    `models` by its import spec, which locates the package without running it."""
    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the models package is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "pretrained" / "__init__.py"
    pretrained_spec = importlib.util.spec_from_file_location("_elastic_pretrained_paths", source)
    if pretrained_spec is None or pretrained_spec.loader is None:
        raise ModuleNotFoundError(f"cannot load {source}")
    pretrained = importlib.util.module_from_spec(pretrained_spec)
    pretrained_spec.loader.exec_module(pretrained)
    return pretrained.default_checkpoint()


# -- models.checkpoint.read_metadata without torch: same checks, same messages ------------------------


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `elastic.json` without touching the weights."""
    path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise ModelCardError(f"checkpoint directory not found: {directory}")
    if not path.is_file():
        raise ModelCardError(f"missing {META_FILE} in {directory}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, nested too deep
        raise ModelCardError(f"{path} is not valid JSON: {err}") from err
    except OSError as err:  # unreadable (permissions): read_metadata lets this through, its callers catch it
        raise ModelCardError(f"cannot read {path}: {err}") from err
    if not isinstance(meta, dict):
        raise ModelCardError(f"{path} must hold a JSON object")
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ModelCardError(f"{path} lacks required fields: {', '.join(missing)}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise ModelCardError(
            f"{path} has schema version {meta['schema_version']!r}; this code reads version {SCHEMA_VERSION}"
        )
    arch = meta["arch"]
    if (
        not isinstance(arch, dict)
        or not isinstance(arch.get("name"), str)
        or not isinstance(arch.get("args", {}), dict)
    ):
        raise ModelCardError(f"{path}: 'arch' must be {{'name': str, 'args': {{...}}}}")
    if not isinstance(meta["classes"], list) or not meta["classes"]:
        raise ModelCardError(f"{path}: 'classes' must be a non-empty list")
    _check_preprocessing(path, meta)
    _check_exits(path, meta["exits"])
    if "agreement" in meta:  # optional: checkpoints made before the guardrail have no baseline
        _check_agreement(path, meta["agreement"], len(meta["exits"]))
    return meta


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_preprocessing(path: Path, meta: dict[str, Any]) -> None:
    size, mean, std = meta["input_size"], meta["mean"], meta["std"]
    if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ModelCardError(f"{path}: input_size must be [C, H, W] of positive ints, got {size!r}")
    for key, values in (("mean", mean), ("std", std)):
        if not (isinstance(values, list) and len(values) == size[0] and all(_is_number(v) for v in values)):
            raise ModelCardError(f"{path}: {key} must hold {size[0]} numbers (one per channel), got {values!r}")
    if any(v <= 0 for v in std):
        raise ModelCardError(f"{path}: std must be positive, got {std!r}")


def _check_exits(path: Path, exits: Any) -> None:
    if not isinstance(exits, list) or not exits:
        raise ModelCardError(f"{path}: 'exits' must be a non-empty list")
    for k, entry in enumerate(exits):
        if not isinstance(entry, dict):
            raise ModelCardError(f"{path}: exit {k} must be a JSON object")
        for key, kind in _EXIT_FIELDS.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise ModelCardError(f"{path}: exit {k} needs '{key}' of type {getattr(kind, '__name__', 'number')}")
        if entry["index"] != k:
            raise ModelCardError(f"{path}: exit {k} has index {entry['index']}; exits must be listed in order")
        accuracy = entry.get("accuracy")
        if accuracy is not None and not (_is_number(accuracy) and 0 <= accuracy <= 1):
            raise ModelCardError(f"{path}: exit {k} accuracy must be null or a fraction in [0, 1], got {accuracy!r}")
        temperature = entry.get("temperature", 1.0)
        if not (_is_number(temperature) and 0 < temperature < float("inf")):
            raise ModelCardError(f"{path}: exit {k} temperature must be a positive number, got {temperature!r}")


def _is_fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _check_agreement(path: Path, agreement: Any, num_exits: int) -> None:
    """The guardrail's baseline (training.agreement): per exit, agreement with the final exit over all images
    and over the images each confidence threshold stops there (null where too few)."""
    where = f"{path}: 'agreement'"
    if not isinstance(agreement, dict):
        raise ModelCardError(f"{where} must be a JSON object")
    thresholds, exits = agreement.get("thresholds"), agreement.get("exits")
    if not (isinstance(thresholds, list) and all(_is_number(t) and 0 < t <= 1 for t in thresholds)):
        raise ModelCardError(f"{where}: 'thresholds' must be a list of numbers in (0, 1], got {thresholds!r}")
    if thresholds != sorted(set(thresholds)):
        raise ModelCardError(f"{where}: 'thresholds' must be increasing, got {thresholds!r}")
    if not (isinstance(exits, list) and len(exits) == num_exits):
        raise ModelCardError(f"{where}: 'exits' must list one entry per exit ({num_exits})")
    for k, entry in enumerate(exits):
        rows = entry.get("confident") if isinstance(entry, dict) else None
        if not (
            _is_fraction(entry.get("all") if isinstance(entry, dict) else None)
            and isinstance(rows, list)
            and len(rows) == len(thresholds)
            and all(row is None or _is_fraction(row) for row in rows)
        ):
            raise ModelCardError(
                f"{where}: exit {k} needs 'all' (a fraction) and 'confident' (a fraction or null per threshold)"
            )
