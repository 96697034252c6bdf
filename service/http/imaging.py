"""Image bytes → a PIL image in the model's colour mode, with limits against hostile input.

Handles PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF in any mode PIL reads: grayscale, RGBA and
LA (composited over white), palette (with transparency), 1-bit, 16- and 32-bit integer, float, CMYK
and YCbCr; EXIF orientation is applied. Blocking (CPU-bound): callers run it in a worker thread.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
# Longest side kept, in multiples of the shorter one. Preprocessing scales the shorter side to the model's
# input and centre-crops; a 200 000 × 1 image (a 667-byte PNG, far under the pixel limit) would become
# 32 × 6 400 000 pixels on the way (1.6 GB, 1.7 s; found by tests/e2e/test_hostile_images.py). Cropping the
# middle first keeps what the centre crop keeps, for models whose input is no wider than this.
MAX_ASPECT = 4


class ImageError(ValueError):
    """The bytes are not a usable image. `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8-bit grayscale instead of clipping them at 255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and float(np.nanmax(values)) <= 1.0 else 255.0
    else:  # I;16* and I: 16-bit data unless values say otherwise
        top = 65535.0 if values.size and float(values.max()) > 255 else 255.0
    scaled = np.clip(np.nan_to_num(values / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent pixels over white: hidden colour under alpha 0 is arbitrary."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _convert(image: Image.Image, channels: int) -> Image.Image:
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        image = _to_8bit(image)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image)
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate as the EXIF orientation says; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _crop_aspect(image: Image.Image) -> Image.Image:
    """The centre of an image longer than MAX_ASPECT × its shorter side (see MAX_ASPECT)."""
    width, height = image.size
    keep = MAX_ASPECT * min(width, height)
    if width > keep:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > keep:
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read and check the header of `data` (format, size, pixel limit); nothing is decoded yet.

    Cheap (tens of µs): callers open on the event loop, decode small images in place and hand big ones
    to a worker thread (`finish_image`), so the header is parsed once per request.
    """
    if not data:
        raise ImageError(400, "empty_image", "the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # our own limit (below) is exact and configurable; PIL's global one only guards the far end
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(400, "not_an_image", "the data is not an image in any format this server reads") from None
    except Image.DecompressionBombError:  # PIL's own hard stop (2 × Image.MAX_IMAGE_PIXELS), from the header
        raise ImageError(413, "too_many_pixels", f"the image header claims more than {max_pixels} pixels") from None
    except Exception as err:  # PIL raises many types for hostile headers
        raise ImageError(400, "bad_image", f"the image header cannot be read: {err}") from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(
            415,
            "unsupported_format",
            f"image format {image.format} is not supported; send one of {', '.join(sorted(SUPPORTED_FORMATS))}",
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(400, "bad_image", f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        pixels = width * height
        raise ImageError(413, "too_many_pixels", f"the image is {width}×{height} = {pixels} pixels; limit {max_pixels}")
    return image


def decode_image(data: bytes, max_pixels: int, channels: int = 3, min_side: int = 0) -> Image.Image:
    """Decode, check and convert `data` to an 'RGB' (or 'L' if `channels` is 1) image."""
    return finish_image(open_image(data, max_pixels), channels, min_side)


def finish_image(image: Image.Image, channels: int = 3, min_side: int = 0) -> Image.Image:
    """Decode an image from `open_image` and convert it to 'RGB' (or 'L' if `channels` is 1).

    `min_side` lets large images be shrunk cheaply while decoding (JPEG draft mode, box reduce) as long
    as the shorter side stays at least twice that, so the final antialiased resize keeps its quality.
    """
    try:
        if min_side and image.format == "JPEG":
            image.draft(image.mode, (2 * min_side, 2 * min_side))
        image.load()
        image = _apply_orientation(image)
        if min_side:
            factor = min(image.size) // (2 * min_side)
            if factor >= 2:
                image = image.reduce(factor)
            image = _crop_aspect(image)
        return _convert(image, channels)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(400, "bad_image", f"the image data is truncated or corrupt: {err}") from None
    except Exception as err:  # never let a strange file become a 500
        raise ImageError(400, "bad_image", f"the image cannot be decoded: {err}") from None
