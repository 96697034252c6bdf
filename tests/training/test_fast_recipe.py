"""The GPU recipe, run small on the CPU: pack an ImageFolder, train a teacher and two students from
it, then import one as a calibrated elastic checkpoint that the server's loader accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from elastic_anytime.models.checkpoint import load_checkpoint
from elastic_anytime.training.import_fast import import_model
from elastic_anytime.training.packed import load_packed

pytestmark = pytest.mark.slow  # scripts/pack_images.py and the recipe's training run in subprocesses

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["ant", "bee", "cat"]
TINY = {"stem": [4, 8], "stages": [[8, 8, 16], [4, 8, 16]], "depth": 1}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(24):  # each class its own colour, so that something can be learnt
            pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            pixels[..., label] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    out = tmp_path_factory.mktemp("pack") / "train"
    subprocess.run([sys.executable, str(REPO / "scripts/pack_images.py"), str(root), str(out)], check=True, cwd=REPO)
    return out


def test_the_pack_holds_every_image_decoded_as_it_was(packed: Path) -> None:
    data = load_packed(packed, workers=1)
    assert data.classes == CLASSES and data.images.shape == (72, 3, 32, 32)
    assert data.labels.bincount().tolist() == [24, 24, 24]
    assert int(data.images[0, 0].float().mean()) > 150  # the first image is an "ant": strong red


@pytest.fixture(scope="module")
def run_dir(packed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = {"seconds": 30, "max_epochs": 2, "epochs": 2, "lr": 0.05}
    recipe = {
        "seed": 0,
        "holdout": 12,
        "deadline_seconds": 300,
        "common": {"batch_size": 16, "weight_decay": 5e-4, "ema": 0.9, "label_smoothing": 0.1, "cutout": 4,
                   "padding": 2, "warmup_epochs": 1, "temperature": 4.0, "alpha": 0.5},
        "teacher": {"name": "teacher", "widths": [8, 8, 8], **spec},
        "students": [
            {"name": "cascade", "arch": "multiscale_cascade", "args": TINY, **spec},
            {"name": "plain", "arch": "multiscale_cascade", "args": {**TINY, "stages": [[8, 8, 16]]},
             "epochs_from": "cascade", "seconds": 30, "lr": 0.05},
        ],
    }  # fmt: skip
    path = tmp_path_factory.mktemp("recipe") / "recipe.json"
    path.write_text(json.dumps(recipe))
    out = tmp_path_factory.mktemp("run")
    command = [sys.executable, "-m", "elastic_anytime.training.fast_recipe", "--data", str(packed),
               "--recipe", str(path), "--out", str(out), "--device", "cpu", "--workers", "1"]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, timeout=300)
    return out


def test_the_run_reports_every_model_with_the_same_epochs_for_the_baseline(run_dir: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"teacher", "cascade", "plain"}
    assert models["cascade"]["epochs"] == models["plain"]["epochs"] == 2
    assert len(models["cascade"]["val"]) == 2 and len(models["plain"]["val"]) == 1
    assert len(report["holdout_indices"]) == 12 and report["classes"] == CLASSES
    for name in models:
        assert (run_dir / f"{name}.safetensors").is_file()


def test_import_writes_a_calibrated_checkpoint_the_loader_accepts(run_dir: Path, packed: Path, tmp_path: Path) -> None:
    meta = import_model(run_dir, "cascade", packed, tmp_path / "ckpt", workers=1)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.meta["arch"]["name"] == "multiscale_cascade" and loaded.model.num_exits == 2
    temperatures = [e["temperature"] for e in loaded.meta["exits"]]
    assert all(0.05 <= t <= 20 for t in temperatures) and temperatures == [e["temperature"] for e in meta["exits"]]
    calibration = loaded.meta["calibration"]
    assert calibration["images"] == 12 and len(calibration["ece_before"]) == len(calibration["ece_after"]) == 2
    assert (tmp_path / "ckpt" / "model.safetensors").stat().st_size < 4 * sum(
        p.numel() for p in loaded.model.parameters()
    )  # stored as float16
