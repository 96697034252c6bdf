"""Read a split packed by scripts/pack_images.py: one file of encoded images, offsets and labels.

Decoding runs in a process pool (a GPU machine has the cores; this one decodes once and caches)."""

from __future__ import annotations

import io
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from elastic_anytime.training.data import TensorData


def _decode(chunk: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8) for data in chunk])


def load_packed(directory: str | Path, workers: int = 8) -> TensorData:
    """All images of a packed split as uint8 (N, C, H, W); every image must have the same size."""
    directory = Path(directory)
    blob = (directory / "images.bin").read_bytes()
    offsets = np.load(directory / "offsets.npy")
    labels = torch.from_numpy(np.load(directory / "labels.npy"))
    classes = json.loads((directory / "classes.json").read_text())
    items = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    size = max(1, len(items) // (workers * 4))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            arrays = list(pool.map(_decode, chunks))
    else:
        arrays = [_decode(c) for c in chunks]
    images = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
    return TensorData(images, labels, classes)
