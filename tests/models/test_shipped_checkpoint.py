"""Every checkpoint shipped with the project loads, and its metadata matches its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elastic_anytime.models.checkpoint import build_metadata, load_checkpoint
from elastic_anytime.models.pretrained import PRETRAINED_DIR, default_checkpoint
from elastic_anytime.models.transforms import eval_transform

SHIPPED = sorted(p.parent for p in PRETRAINED_DIR.glob("*/elastic.json"))


def test_the_default_is_one_of_the_shipped_checkpoints() -> None:
    assert default_checkpoint() in SHIPPED and len(SHIPPED) >= 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_its_metadata_matches_the_model(path: Path) -> None:
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    recomputed = build_metadata(
        ckpt.model,
        meta["arch"]["name"],
        meta["arch"]["args"],
        ckpt.classes,
        meta["input_size"],
        meta["mean"],
        meta["std"],
    )
    for stored, fresh in zip(meta["exits"], recomputed["exits"], strict=True):
        assert stored["name"] == fresh["name"]
        assert stored["params"] == fresh["params"]
        assert stored["mflops"] == pytest.approx(fresh["mflops"], abs=1e-3)
        assert stored["anytime_mflops"] == pytest.approx(fresh["anytime_mflops"], abs=1e-3)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_classifies_an_image_at_every_exit(path: Path) -> None:
    ckpt = load_checkpoint(path)
    transform = eval_transform(ckpt.meta["input_size"], ckpt.meta["mean"], ckpt.meta["std"])
    image = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)  # any size: resized and cropped
    with torch.no_grad():
        logits = ckpt.model(transform(image).unsqueeze(0))
    assert [tuple(out.shape) for out in logits] == [(1, len(ckpt.classes))] * ckpt.model.num_exits
