"""Small helpers shared by the reliability tests (imported as `reliability_helpers`): the server's
memory, image bytes, Prometheus values and checkpoints compatible with the shipped one."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import torch
from PIL import Image

from models.checkpoint import build_metadata, save_checkpoint
from models.pretrained import default_checkpoint
from models.registry import create_model


def rss_bytes(pid: int, peak: bool = False) -> int:
    """Resident memory of a process (Linux /proc), in bytes: now, or its peak so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{'VmHWM' if peak else 'VmRSS'}:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found.group(1)) * 1024


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def metric(text: str, name: str) -> float:
    """The value of one unlabelled (or first) series of `name` in a Prometheus exposition."""
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert found, f"{name} not in metrics"
    return float(found.group(1))


def tiny_checkpoint(directory: Path, classes: list[str], input_size: tuple[int, int, int] | None = None) -> Path:
    """A tiny model saved as a real checkpoint, with the shipped model's input format unless told."""
    shipped = json.loads((default_checkpoint() / "elastic.json").read_text())
    size = tuple(input_size or shipped["input_size"])
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=len(classes), head="conv").eval()
    args = {"num_classes": len(classes), "head": "conv"}
    meta = build_metadata(model, "tiny", args, classes, size, shipped["mean"], shipped["std"])  # type: ignore[arg-type]
    return save_checkpoint(directory, model, meta)
