"""A decoded image → the model's input, a float32 NumPy array (C, H, W), with Pillow and NumPy only.

The same steps as evaluation's `models.transforms.eval_transform` (shorter side resized to the
model's, antialiased bilinear; centre crop; scaled to [0, 1]; normalised), so that a front end
needs no torch. tests/service/engine/test_preprocess_parity.py holds the two to each other on real images:
equal bit for bit at the model's size, within one 8-bit level where a resize is needed (Pillow and
torch round some pixels differently: up to 17 % of them by that one level, in the test).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


class Preprocessor:
    """Built once per checkpoint from its metadata (`input_size`, `mean`, `std`)."""

    def __init__(self, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        self.channels, self.height, self.width = (int(v) for v in input_size)
        self.mode = "L" if self.channels == 1 else "RGB"
        self._mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """An image in the model's colour mode ('RGB' or 'L', see service.http.imaging) → (C, H, W) float32."""
        if image.mode != self.mode:
            image = image.convert(self.mode)
        if image.size != (self.width, self.height):
            image = self._centre_crop(self._resize(image))
        pixels = np.asarray(image, dtype=np.uint8)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        # scale, subtract, divide in float32, in this order: the floats torch's ToDtype + Normalize give
        out = pixels.astype(np.float32)
        out *= np.float32(1.0 / 255)
        out -= self._mean
        out /= self._std
        return out

    def _resize(self, image: Image.Image) -> Image.Image:
        """The shorter side to the model's shorter side; the longer one rounded down, as torchvision does."""
        target = min(self.height, self.width)
        width, height = image.size
        size = (target, int(target * height / width)) if width <= height else (int(target * width / height), target)
        return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)

    def _centre_crop(self, image: Image.Image) -> Image.Image:
        """The centre (height, width); an image smaller than that is padded with black first, as torchvision does."""
        width, height = image.size
        if width < self.width or height < self.height:
            padded = Image.new(image.mode, (max(width, self.width), max(height, self.height)))
            left, top = (padded.width - width) // 2, (padded.height - height) // 2
            padded.paste(image, (left, top))
            image, (width, height) = padded, padded.size
        top = round((height - self.height) / 2.0)
        left = round((width - self.width) / 2.0)
        return image.crop((left, top, left + self.width, top + self.height))
