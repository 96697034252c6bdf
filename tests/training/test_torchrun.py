"""Distributed training the standard way: `torchrun --nproc-per-node 2` (gloo on CPU) runs
`elastic train`; both ranks train on their half of the data and rank 0 alone writes the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from elastic_anytime.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # torchrun starts two training processes


def test_two_process_gloo_run_writes_one_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "elastic_anytime.elastic_cli.main", "train",
        "--data", str(image_folder), "--model", "tiny", "--epochs", "2", "--batch-size", "16",
        "--precision", "fp32", "--threads", "1", "--progress", "false", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ELASTIC_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    assert sorted(p.name for p in out.iterdir()) == ["anytime.png", "checkpoint", "metrics.json", "state"]
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["elastic.json", "model.safetensors"]
    assert sorted(p.name for p in (out / "state").iterdir()) == ["state.json", "state.safetensors"]
    ckpt = load_checkpoint(out / "checkpoint")
    assert ckpt.meta["arch"]["name"] == "tiny" and ckpt.meta["evaluation"]["images"] == 24

    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    # rank 0 saw its half of the 48 training images: hit rates are multiples of 1/24, not of 1/48
    seen = [24 * a for r in history for a in r["train_accuracy"]]
    assert all(abs(s - round(s)) < 1e-6 for s in seen)
    # both ranks finished and print the same checkpoint path
    assert done.stdout.split().count(str(out / "checkpoint")) == 2
