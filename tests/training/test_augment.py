"""Augmentation on uint8 tensors: shape and dtype kept, and each transform does what it says."""

from __future__ import annotations

import pytest
import torch

from elastic_anytime.training.data import augment


def _batch(n: int = 16, size: int = 8) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8)


@pytest.mark.parametrize(
    "kwargs", [{}, {"padding": 0, "flip": False}, {"padding": 2, "cutout": 4}, {"padding": 4, "cutout": 16}]
)
def test_shape_and_dtype_are_kept(kwargs: dict) -> None:
    images = _batch(size=32)
    out = augment(images, **kwargs)
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_nothing_on_means_identity() -> None:
    images = _batch()
    assert torch.equal(augment(images, padding=0, flip=False, cutout=0), images)


def test_flip_mirrors_some_images_and_leaves_the_rest() -> None:
    images = _batch(n=64)
    out = augment(images, padding=0, flip=True)
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 64


def test_crop_is_a_shifted_window_of_the_reflect_padded_image() -> None:
    images = _batch(n=32)
    out = augment(images, padding=2, flip=False)
    padded = torch.nn.functional.pad(images.float(), (2,) * 4, mode="reflect").to(torch.uint8)
    for o, p in zip(out, padded, strict=True):
        windows = [p[:, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(o, w) for w in windows)
    assert not torch.equal(out, images)  # 1 in 25 per image stays centred; not all 32


def test_cutout_zeroes_one_square_per_image() -> None:
    images = _batch(n=32, size=16)  # no zero pixels to begin with
    out = augment(images, padding=0, flip=False, cutout=5)
    for o, i in zip(out, images, strict=True):
        holes = (o == 0).all(0)
        assert 1 <= holes.sum() <= 25  # 5×5 at most, clipped at the borders
        assert torch.equal(o[:, ~holes], i[:, ~holes])
