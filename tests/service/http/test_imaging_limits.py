"""Hostile image bytes at the decoder: forged headers, files of other kinds, extreme aspect ratios,
EXIF orientation (pixels, not only sizes). The HTTP side is tests/e2e/test_hostile_images.py."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from image_builders import png_claiming
from PIL import Image

from elastic_anytime.models.transforms import eval_transform
from elastic_anytime.service.http.imaging import MAX_ASPECT, ImageError, decode_image

LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (10_000, 10_000), (7_000, 6_000)])
def test_forged_png_header_is_refused_before_decoding(width: int, height: int) -> None:
    data = png_claiming(width, height)
    assert len(data) < 200
    with pytest.raises(ImageError) as info:
        decode_image(data, LIMIT)
    assert (info.value.status, info.value.code) == (413, "too_many_pixels")


@pytest.mark.parametrize(
    "data",
    [
        zip_bytes(),
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"\x89PNG\r\n\x1a\n",  # the signature alone
    ],
    ids=["zip", "html", "pdf", "svg", "png-signature-only"],
)
def test_other_files_are_not_images(data: bytes) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data, LIMIT)
    assert info.value.status == 400 and info.value.code in ("not_an_image", "bad_image")


@pytest.mark.parametrize(("width", "height"), [(200_000, 1), (1, 1_000_000), (3_000, 7)])
def test_extreme_aspect_ratio_is_cropped_before_resizing(width: int, height: int) -> None:
    image = decode_image(encode(Image.new("RGB", (width, height), (10, 200, 30)), "PNG"), LIMIT, min_side=32)
    assert max(image.size) <= MAX_ASPECT * min(image.size)


def test_cropping_keeps_what_the_centre_crop_keeps() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (50, 400, 3), dtype=np.uint8)  # 8:1
    original = Image.fromarray(pixels, "RGB")
    transform = eval_transform((3, 32, 32), [0.5] * 3, [0.25] * 3)
    cropped = decode_image(encode(original, "PNG"), LIMIT, min_side=32)
    assert cropped.size == (200, 50)
    assert torch.allclose(transform(cropped), transform(original), atol=1e-6)


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(1, (0, 0)), (3, (1, 1)), (6, (0, 1)), (8, (1, 0))],  # where the red top-left corner shows up
)
def test_exif_orientation_moves_the_pixels(orientation: int, corner: tuple[int, int]) -> None:
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:16, :16] = (255, 0, 0)  # red top-left block of the stored image
    exif = Image.Exif()
    exif[0x0112] = orientation
    shown = np.asarray(decode_image(encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes()), LIMIT))
    height, width = shown.shape[:2]
    assert (width, height) == ((48, 32) if orientation in (1, 3) else (32, 48))
    row = 2 if corner[0] == 0 else height - 3  # corner = (bottom?, right?) in the displayed image
    col = 2 if corner[1] == 0 else width - 3
    assert shown[row, col, 0] > 200 and shown[row, col, 1] < 50, (orientation, shown[row, col])
