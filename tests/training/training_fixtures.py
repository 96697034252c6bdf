"""Tiny generated datasets for the training tests: an ImageFolder of PNGs whose classes differ by
colour, so a tiny model learns them in a few steps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("blue", "green", "red")  # sorted, as ImageFolder sorts them
_CHANNEL = {"red": 0, "green": 1, "blue": 2}


def colour_image(name: str, rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """HWC uint8: noise, with the class's channel raised."""
    height, width = size
    pixels = rng.integers(0, 120, (height, width, 3))
    pixels[..., _CHANNEL[name]] += 120
    return pixels.astype(np.uint8)


def make_image_folder(
    root: Path,
    train_per_class: int = 16,
    test_per_class: int = 8,
    classes: Sequence[str] = CLASSES,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(colour_image(name, rng)).save(folder / f"{i:03d}.png")
    return root
