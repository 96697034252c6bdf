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
        mean_ = np.asarray(mean, dtype=np.float32).reshape(-1, 1)
        std_ = np.asarray(std, dtype=np.float32).reshape(-1, 1)
        # every 8-bit value's float per channel, made by the steps below in their order: a lookup gives the same
        # floats as computing them, in one pass instead of four
        levels = ((np.arange(256, dtype=np.float32)[None, :] * np.float32(1.0 / 255)) - mean_) / std_
        levels = np.broadcast_to(levels, (self.channels, 256))  # one mean and std may serve every channel
        self._table = np.ascontiguousarray(levels, dtype=np.float32).ravel()  # channel c's value v at c * 256 + v
        self._offsets = np.arange(self.channels, dtype=np.intp) * 256

    def __call__(self, image: Image.Image) -> np.ndarray:
        """An image in the model's colour mode ('RGB' or 'L', see service.http.imaging) → (C, H, W) float32."""
        if image.mode != self.mode:
            image = image.convert(self.mode)
        if image.size != (self.width, self.height):
            image = self._centre_crop(self._resize(image))
        pixels = np.asarray(image, dtype=np.uint8)
        index = (pixels[..., None] if pixels.ndim == 2 else pixels).astype(np.intp)
        index += self._offsets  # (H, W, C): each channel's row of the table
        # scaled, less the mean, over the std, in float32 and in this order: the floats torch's ToDtype + Normalize give
        return self._table.take(index.transpose(2, 0, 1))

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
