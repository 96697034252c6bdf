"""Test images for the load generator: the raw file bytes of an ImageFolder split, with labels.

The bytes are posted as they are on disk, so the server pays the same decode a real client causes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Sample:
    data: bytes
    label: int  # index into the checkpoint's classes
    name: str  # file name, for the content type and for debugging

    @property
    def content_type(self) -> str:
        return "image/png" if self.name.lower().endswith(".png") else "image/jpeg"


def resolve_split(data: str | Path, split: str = "test") -> Path:
    """`data` is an ImageFolder root holding `split/`, or the split folder itself."""
    root = Path(data)
    if (root / split).is_dir():
        return root / split
    if root.is_dir():
        return root
    raise FileNotFoundError(f"image folder not found: {root}")


def load_samples(data: str | Path, classes: list[str], count: int, split: str = "test", seed: int = 0) -> list[Sample]:
    """`count` images drawn evenly across classes (seeded), labelled by the checkpoint's class order."""
    folder = resolve_split(data, split)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not class_dirs:
        raise ValueError(f"{folder} has no class folders")
    unknown = [p.name for p in class_dirs if p.name not in classes]
    if unknown:
        raise ValueError(f"class folders {unknown} are not classes of the checkpoint ({', '.join(classes)})")
    rng = random.Random(seed)
    per_class = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        rng.shuffle(files)
        per_class.append((classes.index(class_dir.name), files))
    # round-robin over classes so any prefix of the list is balanced
    chosen: list[tuple[int, Path]] = []
    depth = 0
    while len(chosen) < count and any(depth < len(files) for _, files in per_class):
        for label, files in per_class:
            if depth < len(files) and len(chosen) < count:
                chosen.append((label, files[depth]))
        depth += 1
    if not chosen:
        raise ValueError(f"no images under {folder}")
    return [Sample(data=path.read_bytes(), label=label, name=path.name) for label, path in chosen]
