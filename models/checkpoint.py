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
from elastic_anytime.models.metadata import META_FILE, SCHEMA_VERSION, CheckpointError, read_metadata
from elastic_anytime.models.registry import create_model

WEIGHTS_FILE = "model.safetensors"
CODE_VERSION = "0.1.0"


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
