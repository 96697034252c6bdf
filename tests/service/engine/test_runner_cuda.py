"""The serving path on a CUDA GPU, with the shipped checkpoint and real CIFAR-10 test images: the runner
answers like the CPU in float32 at every exit (fp32 and bf16), the engine answers one batch at several
exits, and the real server (uvicorn subprocess, ELASTIC_DEVICE=cuda) answers posted JPEG bytes.

Skipped where there is no CUDA device (CI); `scripts/gpu_check.sh` runs them on a lent GPU machine.
Test images: $ELASTIC_TEST_IMAGES, else .gpudata/test (made by scripts/gpu_wheels.sh), else
../shared/data/cifar10/test; a CUDA machine with none of them fails, it does not skip.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from elastic_anytime.benchmarks.dataset import Sample, load_samples
from elastic_anytime.models.checkpoint import Checkpoint, load_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.runner import ModelRunner
from elastic_anytime.service.engine.scheduler import Engine
from elastic_anytime.service.engine.types import EngineConfig, Job

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

REPO = Path(__file__).resolve().parents[3]
IMAGES = 128
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def image_folder() -> Path:
    candidates = [os.environ.get("ELASTIC_TEST_IMAGES"), REPO / ".gpudata", REPO.parent / "shared/data/cifar10"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "test").is_dir():
            return Path(candidate)
    pytest.fail("no CIFAR-10 test images: set ELASTIC_TEST_IMAGES or run scripts/gpu_wheels.sh (.gpudata/test)")


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    classes = load_checkpoint(default_checkpoint()).classes
    return load_samples(image_folder(), list(classes), IMAGES)


@pytest.fixture(scope="module")
def cpu_runner() -> ModelRunner:
    return ModelRunner(load_checkpoint(default_checkpoint()), CPU, precision="fp32")


@pytest.fixture(scope="module")
def cuda_checkpoint() -> Checkpoint:
    return load_checkpoint(default_checkpoint(), CUDA)


def tensors(runner: ModelRunner, samples: list[Sample]) -> list[np.ndarray]:
    out = []
    for sample in samples:
        with Image.open(io.BytesIO(sample.data)) as image:
            out.append(runner.preprocess(image.convert("RGB")))
    return out


def every_exit(runner: ModelRunner, inputs: list[np.ndarray]) -> list[tuple[torch.Tensor, list[int]]]:
    """(CPU probabilities, top-1 class ids) at each exit, stage by stage as the engine runs them."""
    features = runner.batch(inputs)
    out = []
    for k in range(runner.num_exits):
        features = runner.stage(k, features)
        probs, _, class_ids = runner.read_exit(k, features)
        out.append((probs, class_ids))
    return out


@pytest.mark.parametrize(("precision", "min_agreement", "probs_atol"), [("fp32", 0.99, 0.02), ("bf16", 0.98, 0.1)])
def test_cuda_runner_answers_like_the_cpu_at_every_exit(
    samples: list[Sample],
    cpu_runner: ModelRunner,
    cuda_checkpoint: Checkpoint,
    precision: str,
    min_agreement: float,
    probs_atol: float,
) -> None:
    runner = ModelRunner(cuda_checkpoint, CUDA, precision=precision)
    assert runner.device.type == CUDA.type and runner.precision == precision
    parameter = next(runner.model.parameters())
    assert parameter.is_cuda and parameter.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    # batch norms folded on CUDA too (the fold once ran a CPU input through the CUDA model and failed)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in runner.model.modules())
    inputs = tensors(cpu_runner, samples)
    labels = [s.label for s in samples]
    reference, got = every_exit(cpu_runner, inputs), every_exit(runner, inputs)
    for k, ((ref_probs, ref_ids), (probs, ids)) in enumerate(zip(reference, got, strict=True)):
        agreement = sum(a == b for a, b in zip(ref_ids, ids, strict=True)) / len(ids)
        assert agreement >= min_agreement, (k, agreement)
        # TF32 convolutions (cuDNN's default for float32) and bfloat16 round more than the CPU's float32
        assert float((probs - ref_probs).abs().max()) <= probs_atol, k
        ref_accuracy = sum(a == y for a, y in zip(ref_ids, labels, strict=True)) / len(labels)
        accuracy = sum(a == y for a, y in zip(ids, labels, strict=True)) / len(labels)
        assert abs(accuracy - ref_accuracy) <= 1 - min_agreement, (k, accuracy, ref_accuracy)
    # the trained checkpoint is far better than chance at the final exit (wrong weights or inputs would not be)
    assert sum(a == y for a, y in zip(got[-1][1], labels, strict=True)) / len(labels) > 0.7


def test_cuda_engine_answers_one_batch_at_different_exits(
    samples: list[Sample], cpu_runner: ModelRunner, cuda_checkpoint: Checkpoint
) -> None:
    runner = ModelRunner(cuda_checkpoint, CUDA, precision="fp32")
    batch_sizes: list[int] = []
    stage = runner.stage

    def recording_stage(index: int, features: torch.Tensor) -> torch.Tensor:
        if index == 0:
            batch_sizes.append(features.shape[0])
        assert features.is_cuda
        return stage(index, features)

    runner.stage = recording_stage  # type: ignore[method-assign]
    profile = LatencyProfile(runner.num_exits, [1, 2, 4, 8])
    engine = Engine(runner, profile, EngineConfig(max_batch_size=8, max_wait_s=0.0, warmup_runs=2, calibration_runs=3))
    inputs = tensors(cpu_runner, samples[:4])
    # compute budgets pick the exit whatever the GPU's speed: exits 4, 2, 1 and 0 (half of exit 0's cost)
    mflops = runner.exit_mflops
    budgets = [Budget(), Budget(max_mflops=mflops[2]), Budget(max_mflops=mflops[1]), Budget(max_mflops=mflops[0] / 2)]

    async def main() -> list:
        loop = asyncio.get_running_loop()
        jobs = [Job(x, b, engine.clock(), loop.create_future()) for x, b in zip(inputs, budgets, strict=True)]
        for job in jobs:  # queued before the engine starts: one batch after calibration
            engine.submit(job)
        engine.start(calibrate_first=True)
        try:
            return await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 60)
        finally:
            await asyncio.to_thread(engine.stop, 10.0)

    answers = asyncio.run(main())
    assert engine.error is None and profile.calibrated
    assert batch_sizes[-1] == 4  # the calibration passes come first; then the four jobs in one batch
    assert [a.exit_index for a in answers] == [4, 2, 1, 0]
    assert [a.mflops for a in answers] == [runner.direct_mflops[k] for k in (4, 2, 1, 0)]
    reference = every_exit(cpu_runner, inputs)
    assert [a.class_id for a in answers] == [reference[a.exit_index][1][i] for i, a in enumerate(answers)]


def test_cuda_server_answers_jpeg_bytes_and_reports_the_device(samples: list[Sample]) -> None:
    sys.path.insert(0, str(REPO / "tests" / "e2e"))  # the serving tests' server helper, shared
    from e2e_server import serve

    with serve(env={"ELASTIC_DEVICE": "cuda"}) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        model = client.get("/v1/model").json()
        assert model["device"].startswith("cuda"), model["device"]
        costs = [e["anytime_mflops"] for e in model["exits"]]
        right = 0
        for i, sample in enumerate(samples[:20]):
            k = i % model["num_exits"]
            response = client.post(
                "/v1/classify",
                files={"image": (sample.name, sample.data, "image/jpeg")},
                data={"budget_mflops": str(costs[k]), "budget_ms": "10000"},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["exit"] == k and body["label"] == model["classes"][body["class_id"]]
            right += body["class_id"] == sample.label
        assert right >= 10  # 20 real images, exits 0-4: the shipped model gets most right even early
        text = client.get("/metrics").text
        for k in range(model["num_exits"]):
            count = re.search(rf'^elastic_exit_latency_seconds_count\{{exit="{k}"\}} (\S+)', text, re.M)
            assert count and float(count.group(1)) >= 4, k
            assert re.search(rf'^elastic_exit_latency_seconds_bucket\{{exit="{k}",le="0.001"\}} ', text, re.M)
        assert re.search(r'^elastic_model_info\{[^}]*device="cuda[^"]*"', text, re.M)


def test_cuda_batches_go_through_pinned_memory_and_equal_the_cpu_batch(
    samples: list[Sample], cpu_runner: ModelRunner, cuda_checkpoint: Checkpoint
) -> None:
    runner = ModelRunner(cuda_checkpoint, CUDA, precision="fp32")
    arrays = tensors(cpu_runner, samples[:5])
    expected = cpu_runner.batch(arrays).contiguous()
    from_arrays = runner.batch(arrays)
    assert from_arrays.is_cuda and runner._staging is not None and runner._staging.is_pinned()
    assert torch.equal(from_arrays.cpu().contiguous(), expected)
    staging = runner._staging
    from_tensors = runner.batch([torch.from_numpy(a) for a in arrays[:3]])  # smaller: the same buffer again
    assert runner._staging is staging
    assert torch.equal(from_tensors.cpu().contiguous(), expected[:3])
