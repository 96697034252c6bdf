"""A checkpoint's `elastic.json`: read and validated without the weights, and without torch (an HTTP front
end reads it too: service.http.model_card). The checks that need the model (exit names against the
architecture, classes against the head size, the weights' hash) are models.checkpoint.load_checkpoint's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
META_FILE = "elastic.json"
_REQUIRED = ("schema_version", "arch", "classes", "input_size", "mean", "std", "exits", "weights_sha256")
_EXIT_FIELDS = {"index": int, "name": str, "mflops": (int, float), "params": int}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match its model."""


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `elastic.json` without touching the weights."""
    path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    if not path.is_file():
        raise CheckpointError(f"missing {META_FILE} in {directory}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, nested too deep
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks required fields: {', '.join(missing)}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} has schema version {meta['schema_version']!r}; this code reads version {SCHEMA_VERSION}"
        )
    arch = meta["arch"]
    if (
        not isinstance(arch, dict)
        or not isinstance(arch.get("name"), str)
        or not isinstance(arch.get("args", {}), dict)
    ):
        raise CheckpointError(f"{path}: 'arch' must be {{'name': str, 'args': {{...}}}}")
    if not isinstance(meta["classes"], list) or not meta["classes"]:
        raise CheckpointError(f"{path}: 'classes' must be a non-empty list")
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
        raise CheckpointError(f"{path}: input_size must be [C, H, W] of positive ints, got {size!r}")
    for key, values in (("mean", mean), ("std", std)):
        if not (isinstance(values, list) and len(values) == size[0] and all(_is_number(v) for v in values)):
            raise CheckpointError(f"{path}: {key} must hold {size[0]} numbers (one per channel), got {values!r}")
    if any(v <= 0 for v in std):
        raise CheckpointError(f"{path}: std must be positive, got {std!r}")


def _check_exits(path: Path, exits: Any) -> None:
    if not isinstance(exits, list) or not exits:
        raise CheckpointError(f"{path}: 'exits' must be a non-empty list")
    for k, entry in enumerate(exits):
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: exit {k} must be a JSON object")
        for key, kind in _EXIT_FIELDS.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise CheckpointError(f"{path}: exit {k} needs '{key}' of type {getattr(kind, '__name__', 'number')}")
        if entry["index"] != k:
            raise CheckpointError(f"{path}: exit {k} has index {entry['index']}; exits must be listed in order")
        accuracy = entry.get("accuracy")
        if accuracy is not None and not (_is_number(accuracy) and 0 <= accuracy <= 1):
            raise CheckpointError(f"{path}: exit {k} accuracy must be null or a fraction in [0, 1], got {accuracy!r}")
        temperature = entry.get("temperature", 1.0)
        if not (_is_number(temperature) and 0 < temperature < float("inf")):
            raise CheckpointError(f"{path}: exit {k} temperature must be a positive number, got {temperature!r}")


def _is_fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _check_agreement(path: Path, agreement: Any, num_exits: int) -> None:
    """The guardrail's baseline (training.agreement): per exit, agreement with the final exit over all images
    and over the images each confidence threshold stops there (null where too few)."""
    where = f"{path}: 'agreement'"
    if not isinstance(agreement, dict):
        raise CheckpointError(f"{where} must be a JSON object")
    thresholds, exits = agreement.get("thresholds"), agreement.get("exits")
    if not (isinstance(thresholds, list) and all(_is_number(t) and 0 < t <= 1 for t in thresholds)):
        raise CheckpointError(f"{where}: 'thresholds' must be a list of numbers in (0, 1], got {thresholds!r}")
    if thresholds != sorted(set(thresholds)):
        raise CheckpointError(f"{where}: 'thresholds' must be increasing, got {thresholds!r}")
    if not (isinstance(exits, list) and len(exits) == num_exits):
        raise CheckpointError(f"{where}: 'exits' must list one entry per exit ({num_exits})")
    for k, entry in enumerate(exits):
        rows = entry.get("confident") if isinstance(entry, dict) else None
        if not (
            _is_fraction(entry.get("all") if isinstance(entry, dict) else None)
            and isinstance(rows, list)
            and len(rows) == len(thresholds)
            and all(row is None or _is_fraction(row) for row in rows)
        ):
            raise CheckpointError(
                f"{where}: exit {k} needs 'all' (a fraction) and 'confident' (a fraction or null per threshold)"
            )
