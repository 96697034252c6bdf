"""Image decoding on real bytes of every format and mode the server promises to read."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from elastic_anytime.service.http.imaging import ImageError, decode_image, finish_image, open_image

LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, x[::-1], np.full_like(x, 90)], axis=2), "RGB")


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: gradient(), "PNG"),
        (lambda: gradient(), "JPEG"),
        (lambda: gradient(), "WEBP"),
        (lambda: gradient(), "BMP"),
        (lambda: gradient(), "GIF"),
        (lambda: gradient(), "TIFF"),
        (lambda: gradient().convert("L"), "PNG"),
        (lambda: gradient().convert("L"), "JPEG"),
        (lambda: gradient().convert("1"), "PNG"),
        (lambda: gradient().convert("RGBA"), "PNG"),
        (lambda: gradient().convert("RGBA"), "WEBP"),
        (lambda: gradient().convert("LA"), "PNG"),
        (lambda: gradient().convert("P"), "PNG"),
        (lambda: gradient().convert("CMYK"), "JPEG"),
        (lambda: gradient().convert("CMYK"), "TIFF"),
    ],
)
def test_formats_and_modes_become_rgb(make, fmt: str) -> None:
    image = decode_image(encode(make(), fmt), LIMIT)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_grayscale_model_gets_l() -> None:
    assert decode_image(encode(gradient(), "PNG"), LIMIT, channels=1).mode == "L"


def test_16_bit_is_scaled_not_clipped() -> None:
    values = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    image = decode_image(encode(Image.fromarray(values), "PNG"), LIMIT)
    assert abs(int(np.asarray(image)[0, 0, 0]) - 127) <= 1


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(rgba, "PNG"), LIMIT))[0, 0].tolist() == [255, 255, 255]
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert np.asarray(decode_image(encode(palette, "PNG", transparency=0), LIMIT))[0, 0].tolist() == [255, 255, 255]


def test_exif_rotation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(gradient(40, 30), "JPEG", exif=exif.tobytes())
    assert decode_image(data, LIMIT).size == (30, 40)


def test_large_jpeg_is_reduced_while_decoding() -> None:
    data = encode(gradient(2000, 1000), "JPEG")
    image = decode_image(data, LIMIT, min_side=32)
    assert min(image.size) >= 64 and image.size[0] < 2000
    assert image.size[0] / image.size[1] == pytest.approx(2.0, rel=0.05)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_image(buffer.getvalue(), LIMIT))[0, 0].tolist()[0] > 200


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_image"),
        (b"hello, this is not an image", 400, "not_an_image"),
        (encode(gradient(), "PNG")[:60], 400, "bad_image"),
        (encode(gradient(200, 200), "JPEG")[:300], 400, "bad_image"),
        (encode(gradient(), "ICO"), 415, "unsupported_format"),
        (encode(gradient(), "PPM"), 415, "unsupported_format"),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "ico", "ppm"],
)
def test_bad_bytes(data: bytes, status: int, code: str) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data, LIMIT)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message


def test_pixel_limit_stops_decompression_bombs() -> None:
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 MP in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError) as info:
        decode_image(bomb, LIMIT)
    assert info.value.status == 413 and "pixels" in info.value.message
    with pytest.raises(ImageError):
        decode_image(encode(gradient(100, 100), "PNG"), max_pixels=5000)


def test_open_image_reads_the_header_without_decoding() -> None:
    assert open_image(encode(gradient(40, 30), "PNG"), LIMIT).size == (40, 30)
    assert open_image(encode(gradient(64, 48), "JPEG"), LIMIT).size == (64, 48)
    # a truncated body still has its header: the size is known, the decode reports the damage
    truncated = open_image(encode(gradient(40, 30), "PNG")[:60], LIMIT)
    assert truncated.size == (40, 30)
    with pytest.raises(ImageError) as info:
        finish_image(truncated)
    assert info.value.code == "bad_image"
    # the header alone is enough to refuse: no pixels are decoded for a bomb or a foreign format
    with pytest.raises(ImageError) as info:
        open_image(encode(gradient(100, 100), "PNG"), max_pixels=5000)
    assert info.value.status == 413
    with pytest.raises(ImageError) as info:
        open_image(b"not an image", LIMIT)
    assert info.value.code == "not_an_image"
