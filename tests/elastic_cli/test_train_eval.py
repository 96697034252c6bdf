"""`elastic train` then `elastic eval` through the installed console script, on a generated
ImageFolder; eval's accuracy is checked against a count made here from the PNG files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elastic_anytime.elastic_cli import main as cli
from elastic_anytime.models.checkpoint import load_checkpoint, read_metadata

SCRIPT = Path(sys.executable).with_name("elastic")
COLOURS = {"blue": 2, "green": 1, "red": 0}  # class → channel that is raised


def _elastic(*args: str, env_cache: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT} (pip install -e .)"
    env = {**os.environ, "ELASTIC_CACHE": str(env_cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, check=False)


def _folder(root: Path, classes: list[str], train: int, test: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 140, (32, 32, 3))
                pixels[..., COLOURS[name]] += rng.integers(0, 116)  # some easy, some hard
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint, data folder, decode cache) from a real `elastic train` run with a JSON config."""
    root = tmp_path_factory.mktemp("train-eval")
    data = _folder(root / "colours", sorted(COLOURS), train=20, test=10, seed=0)
    config = root / "run.json"
    config.write_text(json.dumps({"model": "tiny", "epochs": 2, "batch_size": 20, "loss": "weighted"}))
    done = _elastic(
        "train", "--config", str(config), "--data", str(data), "--out", str(root / "run"), "--threads", "1",
        "--progress", "false", "--precision", "fp32", "--epochs", "3",
        env_cache=root / "cache",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = root / "run" / "checkpoint"
    assert done.stdout.strip() == str(checkpoint)
    assert read_metadata(checkpoint)["training"]["epochs"] == 3  # the flag beat the file
    assert read_metadata(checkpoint)["training"]["loss"] == "weighted"  # the file beat the default
    return checkpoint, data, root / "cache"


@torch.inference_mode()
def _independent_accuracy(checkpoint: Path, test_dir: Path) -> list[float]:
    """Decode with PIL, normalise with numpy and the metadata's mean/std, run every exit, count."""
    ckpt = load_checkpoint(checkpoint)
    mean = np.array(ckpt.meta["mean"], dtype=np.float32)
    std = np.array(ckpt.meta["std"], dtype=np.float32)
    images, labels = [], []
    for name in sorted(p.name for p in test_dir.iterdir()):
        for path in sorted((test_dir / name).glob("*.png")):
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
            images.append(((pixels - mean) / std).transpose(2, 0, 1))
            labels.append(ckpt.classes.index(name))
    outputs = ckpt.model(torch.from_numpy(np.stack(images)))
    y = torch.tensor(labels)
    return [float((z.argmax(1) == y).float().mean()) for z in outputs]


@pytest.mark.slow  # `trained`: `elastic train` in a subprocess
def test_eval_reports_the_independently_counted_accuracy(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    checkpoint, data, cache = trained
    report_path, png = tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.png"
    done = _elastic(
        "eval", str(checkpoint), "--data", str(data), "--json", str(report_path), "--png", str(png), env_cache=cache
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    expected = _independent_accuracy(checkpoint, data / "test")
    assert [e["accuracy"] for e in report["exits"]] == pytest.approx(expected)
    assert report["images"] == 30 and report["split"] == "test"
    meta = read_metadata(checkpoint)
    assert [e["mflops"] for e in report["exits"]] == [e["mflops"] for e in meta["exits"]]
    assert report["exits"][-1]["fraction"] == 1.0
    assert all(1 / 3 <= e["confidence"] <= 1 for e in report["exits"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the table: one line per exit with its accuracy
    lines = done.stdout.splitlines()
    for e in report["exits"]:
        row = next(line for line in lines if line.split()[:2] == [str(e["index"]), e["name"]])
        assert f"{100 * e['accuracy']:.2f}%" in row


@pytest.mark.slow  # `trained`: `elastic train` in a subprocess
def test_write_meta_stores_accuracy_and_keeps_the_checkpoint_loadable(
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, data, cache = trained
    monkeypatch.setenv("ELASTIC_CACHE", str(cache))
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for f in checkpoint.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    meta = read_metadata(copy)
    for e in meta["exits"]:
        e["accuracy"] = None
    (copy / "elastic.json").write_text(json.dumps(meta))

    assert cli.main(["eval", str(copy), "--data", str(data), "--write-meta", "--limit", "12", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is pure JSON with --json -
    assert report["images"] == 12
    stored = load_checkpoint(copy).meta  # loads: the weights' hash still matches
    assert [e["accuracy"] for e in stored["exits"]] == pytest.approx([e["accuracy"] for e in report["exits"]])
    assert stored["evaluation"]["images"] == 12 and stored["evaluation"]["limit"] == 12


@pytest.mark.slow  # `trained`: `elastic train` in a subprocess
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/dataset"], "neither cifar10/cifar100 nor an ImageFolder"),
        (["--data", "cifar10", "--data-root", "/no/such/root"], "--download"),
        (["--data", "{wrong}"], "not among the checkpoint's"),
        (["--data", "{data}", "--device", "gpu7"], "bad --device"),
    ],
)
def test_eval_errors_are_one_clear_line(
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    checkpoint, data, cache = trained
    monkeypatch.setenv("ELASTIC_CACHE", str(cache))
    wrong = _folder(tmp_path / "wrong", ["green", "red"], train=1, test=1, seed=1)
    (wrong / "test" / "purple").mkdir()
    Image.new("RGB", (8, 8)).save(wrong / "test" / "purple" / "x.png")
    args = [a.format(wrong=wrong, data=data) for a in args]
    assert cli.main(["eval", str(checkpoint), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_eval_of_a_missing_checkpoint_and_bad_train_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", str(tmp_path / "nothing"), "--data", "cifar10"]) == 1
    assert "checkpoint directory not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('epochs = "many"\n')
    assert cli.main(["train", "--config", str(bad)]) == 1
    assert "epochs must be int" in capsys.readouterr().err
