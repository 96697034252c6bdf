"""The model runner on the tiny model: the fast preprocessing path, the channels-last layout, partial
head reads and the per-head cost it reports, each against the plain reference computation."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from elastic_anytime.models.checkpoint import Checkpoint, build_metadata
from elastic_anytime.models.registry import create_model
from elastic_anytime.models.transforms import eval_transform
from elastic_anytime.service.engine.runner import (
    ModelRunner,
    fold_batch_norms,
    head_costs,
    native_bf16_cpu,
    resolve_precision,
)

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    meta = build_metadata(model, "tiny", {}, CLASSES, (3, 32, 32), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    return Checkpoint(model=model, meta=meta)


def random_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.mark.parametrize("size", [(32, 32), (40, 32), (64, 48), (17, 90)])
def test_preprocess_gives_the_eval_transforms_input(checkpoint: Checkpoint, size: tuple[int, int]) -> None:
    # service.engine.preprocess, without torch: bit for bit at the model's size, one 8-bit level at most after a resize
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    meta = checkpoint.meta
    transform = eval_transform(meta["input_size"], meta["mean"], meta["std"])
    for seed in range(3):
        image = random_image(*size, seed=seed)
        ours, reference = runner.preprocess(image), transform(image).numpy()
        assert ours.shape == (3, 32, 32) and ours.dtype == np.float32
        if size == (32, 32):
            assert np.array_equal(ours, reference)
        else:
            assert np.abs(ours - reference).max() <= 1.001 / 255 / min(meta["std"])


def test_stage_by_stage_matches_the_reference_model_in_either_layout(checkpoint: Checkpoint) -> None:
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        reference = [torch.softmax(logits, 1) for logits in checkpoint.model(x)]
    for channels_last in (True, False):
        runner = ModelRunner(checkpoint, torch.device("cpu"), channels_last=channels_last)
        assert runner.channels_last is channels_last
        features = runner.batch(list(x))
        for k in range(runner.num_exits):
            features = runner.stage(k, features)
            probs, confidence, class_id = runner.read_exit(k, features)
            torch.testing.assert_close(probs, reference[k], rtol=1e-5, atol=1e-6)
            assert class_id == reference[k].argmax(1).tolist()
            assert confidence == pytest.approx(reference[k].max(1).values.tolist(), abs=1e-6)


def test_cpu_serving_uses_channels_last(checkpoint: Checkpoint) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    assert runner.channels_last
    features = runner.batch([torch.rand(3, 32, 32) for _ in range(2)])
    assert features.is_contiguous(memory_format=torch.channels_last)
    kept = runner.select(runner.stage(0, features), [1])
    assert kept.shape[0] == 1 and kept.is_contiguous(memory_format=torch.channels_last)


def test_reading_some_rows_gives_those_rows(checkpoint: Checkpoint) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    features = runner.stage(0, runner.batch([torch.rand(3, 32, 32) for _ in range(4)]))
    everyone, confidence, class_id = runner.read_exit(0, features)
    some, some_confidence, some_class = runner.read_exit(0, features, [3, 1])
    torch.testing.assert_close(some, everyone[[3, 1]], rtol=1e-5, atol=1e-6)
    assert some_class == [class_id[3], class_id[1]]
    assert some_confidence == pytest.approx([confidence[3], confidence[1]])


def test_head_costs_add_up_to_the_anytime_costs(checkpoint: Checkpoint) -> None:
    direct, heads = head_costs(checkpoint.meta)
    anytime = [e["anytime_mflops"] for e in checkpoint.meta["exits"]]
    for k in range(len(direct)):
        # reading every earlier head on the way costs what the metadata's anytime cost says
        assert direct[k] + sum(heads[:k]) == pytest.approx(anytime[k], abs=1e-6)
    assert heads[-1] == 0.0 and all(h >= 0 for h in heads)
    # metadata without anytime costs: heads count as free, exits cost their direct MFLOPs
    plain = {"exits": [{"mflops": 1.0}, {"mflops": 2.0}]}
    assert head_costs(plain) == ([1.0, 2.0], [0.0, 0.0])


def test_calibration_pass_times_stage_and_head_apart(checkpoint: Checkpoint) -> None:
    runner = ModelRunner(checkpoint, torch.device("cpu"))
    times = runner.time_pass(2)
    assert len(times) == runner.num_exits
    assert all(stage > 0 and head > 0 for stage, head in times)


def randomize_batch_norms(model: torch.nn.Module) -> None:
    """Non-trivial statistics, so that a wrong fold would show."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize(("name", "head", "folds"), [("resnet9", "conv", True), ("densenet121", "linear", False)])
def test_batch_norms_fold_where_a_convolution_feeds_them(name: str, head: str, folds: bool) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, head=head).eval()
    randomize_batch_norms(model)
    folded = fold_batch_norms(model, (3, 32, 32))
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    # resnet9's convolutions and norms sit in nn.Sequential (conv, norm, relu): all fold. DenseNet puts
    # each norm before its convolution: nothing to fold, and the model is served as it is
    assert (norms == 0) is folds and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for expected, got in zip(model(x), folded(x), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if native_bf16_cpu() else torch.float32)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)


def test_bfloat16_runner_answers_like_float32(checkpoint: Checkpoint) -> None:
    full, half = (ModelRunner(checkpoint, torch.device("cpu"), precision=p) for p in ("fp32", "bf16"))
    assert half.precision == "bf16" and next(half.model.parameters()).dtype == torch.bfloat16
    x = list(torch.rand(6, 3, 32, 32))
    a, b = full.batch(x), half.batch(x)
    assert b.dtype == torch.bfloat16
    for k in range(full.num_exits):
        a, b = full.stage(k, a), half.stage(k, b)
        probs, _, _ = half.read_exit(k, b)
        assert probs.dtype == torch.float32  # heads end in float32: confidences compare with float targets
        torch.testing.assert_close(probs, full.read_exit(k, a)[0], rtol=0, atol=0.05)


def test_folding_a_new_model_does_not_break_one_serving_in_another_thread(checkpoint: Checkpoint) -> None:
    # A hot reload folds the new model while the old one serves (engine thread) and images are
    # preprocessed (event loop). Folding once traced with torch.fx, which patches nn.Module calls
    # process-wide: both failed with "module is not installed as a submodule".
    serving = ModelRunner(checkpoint, torch.device("cpu"), precision="fp32")
    errors: list[BaseException] = []
    stop = threading.Event()

    image = random_image(48, 40)  # not the model's size: preprocessing resizes

    def serve() -> None:
        batch = serving.batch([torch.rand(3, 32, 32)])
        while not stop.is_set():
            try:
                serving.preprocess(image)
                features = batch
                for k in range(serving.num_exits):
                    features = serving.stage(k, features)
                    serving.read_exit(k, features)
            except Exception as err:  # the failure under test
                errors.append(err)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so tracing and serving interleave
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for _ in range(20):
            fold_batch_norms(checkpoint.model, (3, 32, 32))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert not errors, errors[0]


def test_dropout_leaves_the_served_copy_and_the_outputs_stay() -> None:
    # eval-mode dropout is the identity, yet one more torch call per head: the served copy has none
    torch.manual_seed(0)
    model = create_model("resnet9", num_classes=7, head="linear", dropout=0.3).eval()
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    served = fold_batch_norms(model, (3, 32, 32))
    assert not any(isinstance(m, torch.nn.Dropout) for m in served.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # the original is untouched
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for expected, got in zip(model(x), served(x), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
