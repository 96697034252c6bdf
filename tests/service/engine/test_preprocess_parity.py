"""The front end's preprocessing (NumPy and Pillow, service/engine/preprocess.py) against evaluation's
(torchvision, models/transforms.py) on real photos: bit for bit at the model's size, within one 8-bit
level after a resize (Pillow and torch round some pixels of an antialiased resize differently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elastic_anytime.models.transforms import eval_transform
from elastic_anytime.service.engine.preprocess import Preprocessor

SAMPLES = sorted((Path(__file__).parents[3] / "service" / "http" / "static" / "samples").glob("*.jpg"))
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
ONE_LEVEL = 1 / 255 / min(STD)  # one 8-bit step, in normalised units
SIZES = [(64, 64), (100, 37), (37, 100), (17, 23), (640, 480), (33, 31), (31, 33)]


def both(image: Image.Image, input_size: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    mean, std = MEAN[: input_size[0]], STD[: input_size[0]]
    ours = Preprocessor(input_size, mean, std)(image)
    reference = eval_transform(input_size, mean, std)(image).numpy()
    return ours, reference


def test_there_are_real_photos_to_compare() -> None:
    assert len(SAMPLES) >= 5


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_a_photo_at_the_models_size_is_preprocessed_bit_for_bit(path: Path) -> None:
    image = Image.open(path).convert("RGB")
    assert image.size == (32, 32)
    ours, reference = both(image, (3, 32, 32))
    assert ours.dtype == np.float32 and ours.shape == (3, 32, 32)
    assert np.array_equal(ours, reference)


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("input_size", [(3, 32, 32), (3, 32, 48), (1, 28, 28)], ids=str)
def test_a_resized_photo_is_within_one_level(size: tuple[int, int], input_size: tuple[int, int, int]) -> None:
    mode = "L" if input_size[0] == 1 else "RGB"
    for path in SAMPLES:
        image = Image.open(path).convert(mode).resize(size, Image.Resampling.BICUBIC)
        ours, reference = both(image, input_size)
        assert ours.shape == reference.shape == input_size
        difference = np.abs(ours - reference)
        assert difference.max() <= ONE_LEVEL * 1.001, f"{path.name} at {size}: {difference.max() / ONE_LEVEL} levels"
        # some pixels by one level (up to 17 % seen, on a tall image), never a shifted crop's noise
        assert (difference > 1e-6).mean() < 0.25


def test_an_image_narrower_than_the_crop_is_padded_as_torchvision_pads_it() -> None:
    image = Image.open(SAMPLES[0]).convert("RGB")  # square: resized to 32 x 32, then a 48-wide crop pads it
    ours, reference = both(image, (3, 32, 48))
    np.testing.assert_array_equal(ours, reference)


def test_the_runner_hands_its_arrays_to_the_model_as_one_batch() -> None:
    arrays = [Preprocessor((3, 32, 32), MEAN, STD)(Image.open(p).convert("RGB")) for p in SAMPLES[:3]]
    assert torch.equal(torch.from_numpy(np.stack(arrays))[1], torch.from_numpy(arrays[1]))
