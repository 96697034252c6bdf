"""Datasets: ImageFolder from generated PNGs (any size), CIFAR-100 through torchvision from a
fixture in its python-pickle format, the decode cache, subsets and normalisation constants."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets
from training_fixtures import CLASSES

from elastic_anytime.training.data import CIFAR10_MEAN_STD, CIFAR100_MEAN_STD, TensorData, load_split, mean_std


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_image_folder_decodes_every_image_in_class_order(image_folder: Path) -> None:
    train = load_split(str(image_folder), "train")
    test = load_split(str(image_folder), "test")
    assert train.classes == test.classes == list(CLASSES)
    assert train.images.shape == (48, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0] * 16 + [1] * 16 + [2] * 16
    assert len(test) == 24
    first = np.array(Image.open(image_folder / "train" / "blue" / "000.png"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))


def test_image_folder_resizes_and_centre_crops_other_sizes(tmp_path: Path) -> None:
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16] = (255, 0, 0)  # red margins that the centre crop must cut off
    wide[:, 48:] = (255, 0, 0)
    wide[:, 16:48] = (0, 0, 255)
    _png(tmp_path / "train" / "a" / "wide.png", wide)
    _png(tmp_path / "train" / "b" / "big.png", np.full((80, 80, 3), (10, 200, 30), np.uint8))
    _png(tmp_path / "train" / "b" / "grey.png", np.full((20, 24), 77, np.uint8))  # mode L, smaller than 32
    _png(tmp_path / "test" / "a" / "x.png", wide)
    data = load_split(str(tmp_path), "train", image_size=32)
    assert data.images.shape == (3, 3, 32, 32)
    assert data.images[0].permute(1, 2, 0).reshape(-1, 3).unique(dim=0).tolist() == [[0, 0, 255]]
    assert data.images[1].permute(1, 2, 0).reshape(-1, 3).unique(dim=0).tolist() == [[10, 200, 30]]
    assert data.images[2].unique().tolist() == [77]  # grey → RGB, upscaled
    assert load_split(str(tmp_path), "train", image_size=16).images.shape == (3, 3, 16, 16)


def test_image_folder_decode_is_cached_as_npy(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_split(str(image_folder), "test", cache_dir=cache)
    files = list(cache.glob("*.npy"))
    assert len(files) == 1
    again = load_split(str(image_folder), "test", cache_dir=cache)
    assert torch.equal(first.images, again.images)
    assert np.load(files[0], allow_pickle=False).shape == (24, 3, 32, 32)


def test_missing_or_malformed_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither cifar10/cifar100 nor an ImageFolder"):
        load_split(str(tmp_path / "nowhere"), "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-directories"):
        load_split(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="split not found"):
        load_split(str(tmp_path), "test")
    with pytest.raises(ValueError, match="split must be train or test"):
        load_split(str(tmp_path), "val")


# ---- CIFAR-100 in torchvision's on-disk format -------------------------------------------------


def _cifar100_fixture(root: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """Write cifar-100-python/{train,test,meta} as torchvision expects; return the CHW images written."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        batch = {
            "batch_label": f"{split} batch",
            "filenames": [f"{split}_{i}.png" for i in range(n)],
            "fine_labels": [i % 100 for i in range(n)],
            "coarse_labels": [i % 20 for i in range(n)],
            "data": images.reshape(n, 3072),  # rows of R plane, G plane, B plane
        }
        (folder / split).write_bytes(pickle.dumps(batch))
        written[split] = images
    meta = {
        "fine_label_names": [f"class{i:02d}" for i in range(100)],
        "coarse_label_names": [f"super{i:02d}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return written


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar100_loads_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = _cifar100_fixture(tmp_path, n_train=120, n_test=30)
    folder = tmp_path / "cifar-100-python"
    # torchvision verifies the published MD5s; point them at the fixture's files (its loader still runs).
    monkeypatch.setattr(datasets.CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(datasets.CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(
        datasets.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": _md5(folder / "meta")}
    )
    train = load_split("cifar100", "train", root=str(tmp_path))
    test = load_split("cifar100", "test", root=str(tmp_path))
    assert train.images.shape == (120, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(written["train"]))
    assert torch.equal(test.images, torch.from_numpy(written["test"]))
    assert train.labels.tolist() == [i % 100 for i in range(120)]
    assert train.classes == [f"class{i:02d}" for i in range(100)]
    assert mean_std("cifar100", train) == CIFAR100_MEAN_STD


def test_cifar_absent_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--download"):
        load_split("cifar100", "train", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--data-root"):
        load_split("cifar10", "test", root=str(tmp_path))


def test_corrupt_cifar_files_are_refused(tmp_path: Path) -> None:
    _cifar100_fixture(tmp_path, 10, 10)  # real torchvision checksums: the fixture does not match them
    with pytest.raises(FileNotFoundError, match="not found"):
        load_split("cifar100", "train", root=str(tmp_path))


# ---- subsets and normalisation -----------------------------------------------------------------


def test_subset_is_a_fixed_random_sample() -> None:
    data = TensorData(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100), ["x"])
    a, b = data.subset(10, seed=0), data.subset(10, seed=0)
    assert torch.equal(a.labels, b.labels) and len(a) == 10
    assert len(set(a.labels.tolist())) == 10 and a.labels.tolist() != list(range(10))
    assert torch.equal(a.images.view(-1).long(), a.labels)  # images travel with their labels
    assert data.subset(0) is data and data.subset(1000) is data


def test_mean_std_is_published_for_cifar_and_measured_otherwise() -> None:
    assert mean_std("cifar10", TensorData(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.zeros(1), [])) == (
        CIFAR10_MEAN_STD
    )
    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    images[1] = 255  # half black, half white per channel: mean 0.5, std of {0,…,1} over 8 values
    mean, std = mean_std("/some/folder", TensorData(images, torch.zeros(2), ["a"]))
    assert mean == pytest.approx((0.5, 0.5, 0.5))
    assert std == pytest.approx((torch.tensor([0.0] * 4 + [1.0] * 4).std().item(),) * 3)
