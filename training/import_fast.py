"""Turn a model written by `training.fast_recipe` into an elastic checkpoint, calibrated.

The GPU run writes each model as one safetensors file (architecture and training record in its
metadata) beside report.json (classes, normalisation, the held-out image indices). Here, on any
machine: rebuild the model, fit one softmax temperature per exit on the held-out training images,
report each exit's ECE before and after, and write the checkpoint. Accuracy on the test split is
`elastic eval CHECKPOINT --write-meta` afterwards, so it is measured by the same code as every other
checkpoint's.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.elastic import ElasticNet
from elastic_anytime.models.registry import create_model
from elastic_anytime.models.transforms import normalize_batch
from elastic_anytime.training.calibration import calibrate_exits
from elastic_anytime.training.packed import load_packed

log = logging.getLogger("import_fast")


def load_trained(path: Path) -> tuple[ElasticNet, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, its architecture, its training record) from one fast-recipe file."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "arch" not in metadata:
        raise ValueError(f"{path} was not written by training.fast_recipe: no 'arch' in its metadata")
    arch, result = json.loads(metadata["arch"]), json.loads(metadata.get("result", "{}"))
    model = create_model(arch["name"], **arch["args"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()})
    return model.eval(), arch, result


@torch.no_grad()
def exit_logits(model: ElasticNet, images: torch.Tensor, mean: list[float], std: list[float]) -> list[torch.Tensor]:
    outputs: list[list[torch.Tensor]] = [[] for _ in range(model.num_exits)]
    for start in range(0, len(images), 500):
        for k, z in enumerate(model(normalize_batch(images[start : start + 500], mean, std))):
            outputs[k].append(z.float())
    return [torch.cat(z) for z in outputs]


def import_model(run_dir: Path, name: str, pack: Path, dest: Path, workers: int = 2) -> dict[str, Any]:
    report = json.loads((run_dir / "report.json").read_text())
    model, arch, result = load_trained(run_dir / f"{name}.safetensors")
    held_out = torch.tensor(report["holdout_indices"])
    data = load_packed(pack, workers)
    if data.classes != report["classes"]:
        raise ValueError(f"{pack} holds classes {data.classes}, the run trained on {report['classes']}")
    logits = exit_logits(model, data.images[held_out], report["mean"], report["std"])
    calibration = calibrate_exits(logits, data.labels[held_out])
    args = dict(arch["args"])
    training = {
        "recipe": report["recipe"].get("file"),
        "device": report.get("device"),
        "torch": report.get("torch"),
        "epochs": result.get("epochs"),
        "seconds": result.get("seconds"),
        "held_out_accuracy": result.get("val"),
        "teacher": next((m for m in report["models"] if m.get("name") == "teacher"), {}).get("val"),
    }
    meta = build_metadata(
        model, arch["name"], args, report["classes"], (3, 32, 32), report["mean"], report["std"], "cifar10", training
    )
    for entry, temperature in zip(meta["exits"], calibration["temperature"], strict=True):
        entry["temperature"] = temperature
    meta["calibration"] = {"images": len(held_out), "split": "held-out training images", **calibration}
    save_checkpoint(dest, model, meta, weights_dtype=torch.float16)
    log.info("%s -> %s: temperatures %s, ECE %s -> %s", name, dest, calibration["temperature"],
             calibration["ece_before"], calibration["ece_after"])  # fmt: skip
    return meta


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the fast recipe's output folder (report.json, NAME.safetensors)")
    parser.add_argument("name", help="which model of the run, e.g. cascade or plain50")
    parser.add_argument("dest", type=Path, help="checkpoint folder to write")
    parser.add_argument("--pack", type=Path, default=Path(".pack/train"), help="the packed train split it used")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import_model(args.run_dir, args.name, args.pack, args.dest, args.workers)


if __name__ == "__main__":
    main()
