"""Datasets as uint8 tensors in memory, augmented on tensors.

Small images are decoded once (CIFAR from torchvision's files, ImageFolder from JPEG/PNG) into an
(N, C, H, W) uint8 tensor; an ImageFolder decode is cached as .npy (no pickle), so later epochs and
runs never touch a JPEG decoder again — on 2 cores decoding would be the bottleneck.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from PIL import Image

from elastic_anytime.models.transforms import eval_transform

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_MEAN_STD = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def default_cache_dir() -> Path:
    """Decoded-image cache: $ELASTIC_CACHE, else ~/.cache/elastic (never inside the data folder)."""
    return Path(os.environ.get("ELASTIC_CACHE", "~/.cache/elastic")).expanduser()


@dataclass
class TensorData:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int, seed: int = 0) -> TensorData:
        """A fixed random subset of `count` items (all if count is 0 or too large)."""
        if count <= 0 or count >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        return TensorData(self.images[order], self.labels[order], self.classes)


def _torchvision_cifar(name: str, root: str, train: bool, download: bool) -> TensorData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} not found under {root!r}: pass --data-root DIR holding it, or --download to fetch it ({err})"
        ) from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return TensorData(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes))


def _list_image_folder(split_dir: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class sub-directories")
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(index)
    return paths, labels, classes


def _decode(paths: list[Path], image_size: int) -> torch.Tensor:
    # Reuse the serving transform's geometry (shorter side resize + centre crop), stopping before
    # normalisation so the cache stays uint8.
    geometry = eval_transform((3, image_size, image_size), (0, 0, 0), (1, 1, 1)).transforms[:3]
    out = torch.empty(len(paths), 3, image_size, image_size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        out[i] = geometry[2](geometry[1](geometry[0](rgb)))
    return out


def _image_folder(root: Path, split: str, image_size: int, cache_dir: Path | None) -> TensorData:
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"ImageFolder split not found: {split_dir} (expected {root}/train and {root}/test)")
    paths, labels, classes = _list_image_folder(split_dir)
    if not paths:
        raise FileNotFoundError(f"no images under {split_dir}")
    key = hashlib.sha256(f"{split_dir.resolve()}|{len(paths)}|{paths[-1]}|{image_size}".encode()).hexdigest()[:16]
    cache = (cache_dir or default_cache_dir()) / f"{root.name}-{split}-{key}.npy"
    try:
        images = torch.from_numpy(np.load(cache, allow_pickle=False))
        log.info("loaded %d decoded %s images from %s", len(images), split, cache)
    except (OSError, ValueError):
        log.info("decoding %d %s images from %s (cached afterwards)", len(paths), split, split_dir)
        images = _decode(paths, image_size)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images.numpy(), allow_pickle=False)
        except OSError as err:  # a read-only data dir only costs the cache
            log.warning("could not write decode cache %s: %s", cache, err)
    return TensorData(images, torch.as_tensor(labels, dtype=torch.int64), classes)


def load_split(
    data: str,
    split: str,
    root: str = "data",
    download: bool = False,
    image_size: int = 32,
    cache_dir: str | Path | None = None,
) -> TensorData:
    """`data` is cifar10 / cifar100 (torchvision) or an ImageFolder root; `split` is train or test."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    if data in ("cifar10", "cifar100"):
        return _torchvision_cifar(data, root, split == "train", download)
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {data!r} is neither cifar10/cifar100 nor an ImageFolder directory")
    return _image_folder(path, split, image_size, Path(cache_dir) if cache_dir else None)


def mean_std(data: str, train: TensorData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation constants: the published ones for CIFAR, measured on the train split otherwise."""
    if data == "cifar10":
        return CIFAR10_MEAN_STD
    if data == "cifar100":
        return CIFAR100_MEAN_STD
    pixels = train.images[:10000].float().div_(255)
    return tuple(pixels.mean((0, 2, 3)).tolist()), tuple(pixels.std((0, 2, 3)).tolist())


def augment(images: torch.Tensor, padding: int = 4, flip: bool = True, cutout: int = 0) -> torch.Tensor:
    """Random crop with reflect padding, horizontal flip and cut-out on a uint8 (B, C, H, W) batch, on
    whatever device it lives, without a Python loop over images."""
    batch, channels, height, width = images.shape
    device = images.device
    out = images
    if padding:
        padded = F.pad(out.float(), (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (batch, 1), device=device) + torch.arange(height, device=device)
        dx = torch.randint(0, 2 * padding + 1, (batch, 1), device=device) + torch.arange(width, device=device)
        rows = torch.arange(batch, device=device).view(-1, 1, 1, 1)
        chans = torch.arange(channels, device=device).view(1, -1, 1, 1)
        out = padded[rows, chans, dy.view(batch, 1, height, 1), dx.view(batch, 1, 1, width)].to(images.dtype)
    if flip:
        mask = torch.rand(batch, device=device) < 0.5
        out = torch.where(mask.view(-1, 1, 1, 1), out.flip(3), out)
    if cutout:
        cy = torch.randint(0, height, (batch, 1, 1), device=device)
        cx = torch.randint(0, width, (batch, 1, 1), device=device)
        ys = torch.arange(height, device=device).view(1, -1, 1)
        xs = torch.arange(width, device=device).view(1, 1, -1)
        hole = ((ys - cy).abs() <= cutout // 2) & ((xs - cx).abs() <= cutout // 2)
        out = out.masked_fill(hole.unsqueeze(1), 0)
    return out
