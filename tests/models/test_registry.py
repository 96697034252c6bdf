"""The registry: names, argument errors, backbone options, and opt-in torchvision weights.

Pretrained weights are never downloaded here: the tests put files in a temporary torch hub cache
($TORCH_HOME), which `torch.hub.load_state_dict_from_url` reads instead of the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import densenet, mobilenet_v2, resnet18

from elastic_anytime.models.backbones.torchvision_weights import PretrainedWeightsError
from elastic_anytime.models.registry import available_models, create_model

RESNET18_FILE = "resnet18-f37072fd.pth"
MOBILENET_FILE = "mobilenet_v2-7ebf99e0.pth"
DENSENET_FILE = "densenet121-a639ec97.pth"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    return cache


def test_unknown_model_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet1000'.*cifar_resnet20"):
        create_model("resnet1000")


def test_bad_backbone_arguments_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad arguments for model 'tiny'"):
        create_model("tiny", width=8)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        create_model("tiny", num_classes=0)


def test_registered_names_are_sorted_and_unique() -> None:
    names = available_models()
    assert names == sorted(set(names))


def test_cifar_resnet_width_and_depth() -> None:
    narrow, wide = create_model("cifar_resnet20", width=8), create_model("cifar_resnet20", width=32)
    assert narrow.exits[-1][-1].in_features == 32 and wide.exits[-1][-1].in_features == 128
    assert create_model("cifar_resnet56").num_exits == 27


def test_cifar_resnet_rejects_depths_that_are_not_6n_plus_2() -> None:
    from elastic_anytime.models.backbones.cifar_resnet import cifar_resnet

    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(depth=21)


def test_imagenet_stem_keeps_torchvisions_first_layers() -> None:
    model = create_model("resnet18", cifar_stem=False).eval()
    conv = model.stem[0]
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2)
    assert isinstance(model.stem[3], nn.MaxPool2d)
    assert model(torch.randn(1, 3, 64, 64))[-1].shape == (1, 10)


def test_cifar_stems_keep_32x32_resolution_to_4x4() -> None:
    for name in ("resnet18", "mobilenetv2", "densenet121"):
        model = create_model(name).eval()
        features = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            for k in range(model.num_exits):
                features = model.run_stage(k, features)
        assert features.shape[-2:] == (4, 4), name


def test_pretrained_weights_land_in_the_backbone(hub_cache: Path) -> None:
    reference = resnet18()
    torch.save(reference.state_dict(), hub_cache / RESNET18_FILE)
    model = create_model("resnet18", pretrained=True)
    torch.testing.assert_close(model.stages[0].conv1.weight, reference.layer1[0].conv1.weight)
    torch.testing.assert_close(model.stem[1].running_var, reference.bn1.running_var)
    assert model.stem[0].kernel_size == (3, 3), "the CIFAR stem replaces the 7×7 conv after loading"
    imagenet_stem = create_model("resnet18", pretrained=True, cifar_stem=False)
    torch.testing.assert_close(imagenet_stem.stem[0].weight, reference.conv1.weight)


def test_pretrained_mobilenet_keeps_weights_through_the_cifar_strides(hub_cache: Path) -> None:
    reference = mobilenet_v2()
    torch.save(reference.state_dict(), hub_cache / MOBILENET_FILE)
    model = create_model("mobilenetv2", pretrained=True)
    torch.testing.assert_close(model.stem[0].weight, reference.features[0][0].weight)
    with pytest.raises(ValueError, match=r"width_mult=1\.0 only"):
        create_model("mobilenetv2", pretrained=True, width_mult=0.5)


def test_pretrained_densenet_reads_old_style_keys(hub_cache: Path) -> None:
    """torchvision's DenseNet file predates num_batches_tracked and names layers 'norm.1', 'conv.2'…"""
    reference = densenet.densenet121()
    old_style = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2") if "denselayer" in k else k: v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert any("norm.1" in k for k in old_style)
    torch.save(old_style, hub_cache / DENSENET_FILE)
    model = create_model("densenet121", pretrained=True)
    torch.testing.assert_close(
        model.stages[0].layer.conv2.weight, reference.features.denseblock1.denselayer1.conv2.weight
    )


def test_unreadable_pretrained_weights_give_a_clear_error(hub_cache: Path) -> None:
    (hub_cache / RESNET18_FILE).write_bytes(b"this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"could not fetch torchvision weights.*resnet18-f37072fd\.pth"):
        create_model("resnet18", pretrained=True)


def test_pretrained_weights_of_another_model_give_a_clear_error(hub_cache: Path) -> None:
    torch.save(mobilenet_v2().state_dict(), hub_cache / RESNET18_FILE)
    with pytest.raises(PretrainedWeightsError, match="do not fit the model"):
        create_model("resnet18", pretrained=True)


def test_pretrained_files_are_loaded_without_unpickling_objects(hub_cache: Path) -> None:
    """weights_only=True: a pickled object (not tensors) must be refused, not executed."""
    torch.save({"conv1.weight": Path("/")}, hub_cache / RESNET18_FILE)
    with pytest.raises(PretrainedWeightsError, match="could not fetch"):
        create_model("resnet18", pretrained=True)
