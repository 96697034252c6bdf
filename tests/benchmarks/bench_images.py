"""A tiny ImageFolder of real JPEG files for the benchmark tests (imported as `bench_images`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_image_folder(root: Path, classes: list[str], per_class: int, split: str = "test") -> Path:
    """root/split/<class>/NNNN.jpg with random-pixel JPEGs; returns root."""
    for c, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{i:04d}.jpg").write_bytes(jpeg_bytes(100 * c + i))
    return root
