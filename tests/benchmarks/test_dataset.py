from pathlib import Path

import pytest
from bench_images import make_image_folder

from elastic_anytime.benchmarks.dataset import load_samples, resolve_split


def test_samples_are_balanced_labelled_by_checkpoint_order_and_raw_bytes(tmp_path: Path, classes: list[str]) -> None:
    chosen = [classes[4], classes[1], classes[7]]
    root = make_image_folder(tmp_path, chosen, per_class=3)
    samples = load_samples(root, classes, count=6)
    assert len(samples) == 6
    # round-robin over the (sorted) class folders: any prefix is balanced
    assert sorted(s.label for s in samples[:3]) == sorted(classes.index(c) for c in chosen)
    assert sorted(s.label for s in samples) == sorted(2 * [classes.index(c) for c in chosen])
    for s in samples:
        on_disk = root / "test" / classes[s.label] / s.name
        assert s.data == on_disk.read_bytes()
        assert s.content_type == "image/jpeg"


def test_count_larger_than_the_folder_takes_everything_once(tmp_path: Path, classes: list[str]) -> None:
    root = make_image_folder(tmp_path, classes[:2], per_class=2)
    samples = load_samples(root, classes, count=100)
    assert len(samples) == 4
    assert len({(s.label, s.name) for s in samples}) == 4


def test_split_folder_itself_is_accepted(tmp_path: Path, classes: list[str]) -> None:
    root = make_image_folder(tmp_path, classes[:1], per_class=1)
    assert resolve_split(root / "test") == root / "test"
    assert len(load_samples(root / "test", classes, count=5)) == 1


def test_unknown_class_folder_and_missing_folder_are_clear_errors(tmp_path: Path, classes: list[str]) -> None:
    root = make_image_folder(tmp_path, ["not-a-class"], per_class=1)
    with pytest.raises(ValueError, match="not-a-class"):
        load_samples(root, classes, count=1)
    with pytest.raises(FileNotFoundError):
        load_samples(tmp_path / "missing", classes, count=1)
