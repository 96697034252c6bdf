"""Elastic checkpoint: a directory with `model.safetensors` and `elastic.json`.

The JSON carries everything needed to rebuild and use the model (architecture name + constructor
args, classes, preprocessing, per-exit cost and accuracy, training provenance). Loading validates
it and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from elastic_anytime.models.cost import exit_costs
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import create_model

SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "elastic.json"
CODE_VERSION = "0.1.0"
_REQUIRED = ("schema_version", "arch", "classes", "input_size", "mean", "std", "exits", "weights_sha256")
_EXIT_FIELDS = {"index": int, "name": str, "mflops": (int, float), "params": int}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match its model."""


@dataclass
class Checkpoint:
    model: ElasticNet
    meta: dict[str, Any]
    path: Path | None = None
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = list(self.meta["classes"])


def build_metadata(
    model: ElasticNet,
    arch: str,
    arch_args: dict[str, Any],
    classes: list[str],
    input_size: tuple[int, int, int],
    mean: list[float],
    std: list[float],
    dataset: str | None = None,
    training: dict[str, Any] | None = None,
    accuracies: list[float | None] | None = None,
) -> dict[str, Any]:
    """Metadata for `model`, with per-exit MFLOPs and params computed from the model itself."""
    costs = exit_costs(model, input_size)
    accuracies = accuracies or [None] * len(costs)
    return {
        "schema_version": SCHEMA_VERSION,
        "arch": {"name": arch, "args": arch_args},
        "classes": list(classes),
        "input_size": list(input_size),
        "mean": list(mean),
        "std": list(std),
        "exits": [
            {
                "index": k,
                "name": model.exit_names[k],
                "mflops": round(c.mflops, 4),
                "anytime_mflops": round(c.anytime_mflops, 4),
                "params": c.params,
                "accuracy": accuracies[k],
            }
            for k, c in enumerate(costs)
        ],
        "dataset": dataset,
        "training": training or {},
        "code_version": CODE_VERSION,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    directory: str | Path, model: ElasticNet, meta: dict[str, Any], weights_dtype: torch.dtype | None = None
) -> Path:
    """Write weights + metadata; the metadata records the weights' SHA-256 to catch corruption.

    `weights_dtype` (e.g. torch.float16) stores floating-point tensors narrower, halving a large model's
    file; loading widens them back into the model's float32 parameters."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: _stored(v, weights_dtype) for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    save_file(state, str(weights))
    meta = dict(meta, weights_sha256=_sha256(weights))
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach().contiguous().cpu()
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `elastic.json` without touching the weights."""
    path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    if not path.is_file():
        raise CheckpointError(f"missing {META_FILE} in {directory}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
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


def _build_model(meta: dict[str, Any]) -> ElasticNet:
    args = dict(meta["arch"].get("args", {}))
    args.pop("pretrained", None)  # the weights come from the checkpoint, never from a download
    num_classes = args.get("num_classes", len(meta["classes"]))
    if num_classes != len(meta["classes"]):
        raise CheckpointError(
            f"model has {num_classes} outputs but the checkpoint lists {len(meta['classes'])} classes"
        )
    args["num_classes"] = num_classes
    try:
        model = create_model(meta["arch"]["name"], **args)
    except ValueError as err:
        raise CheckpointError(f"cannot rebuild the model: {err}") from err
    if model.num_exits != len(meta["exits"]):
        raise CheckpointError(f"metadata lists {len(meta['exits'])} exits but the model has {model.num_exits}")
    names = [e["name"] for e in meta["exits"]]
    if names != model.exit_names:
        raise CheckpointError(f"metadata exit names {names} differ from the model's {model.exit_names}")
    return model


def _load_weights(path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"missing {WEIGHTS_FILE} in {path.parent}")
    if _sha256(path) != meta["weights_sha256"]:
        raise CheckpointError(f"{path} is corrupt or truncated: its SHA-256 does not match the metadata")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def _check_state(model: ElasticNet, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    mismatched = [
        f"{key}: file {tuple(tensor.shape)}, model {tuple(expected[key].shape)}"
        for key, tensor in sorted(state.items())
        if tensor.shape != expected[key].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch in {len(mismatched)} tensors (weights of another model size?): {'; '.join(mismatched[:3])}"
        )
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"weights hold non-finite values (NaN/inf) in {key}")


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from `elastic.json`, load and validate its weights, return it in eval mode."""
    directory = Path(directory)
    meta = read_metadata(directory)
    model = _build_model(meta)
    state = _load_weights(directory / WEIGHTS_FILE, meta)
    _check_state(model, state)
    model.load_state_dict(state)
    model.eval().to(device)
    return Checkpoint(model=model, meta=meta, path=directory)
