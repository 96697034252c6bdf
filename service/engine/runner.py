"""The torch side of serving, as a few small hooks: preprocess, batch, stage, read_exit, select, top_k,
time_pass.

The engine drives these without importing torch. Everything runs under `torch.inference_mode`.
A stage and an exit head are separate calls, so the engine can skip the head of an exit where no
request in the batch can stop. Both end synchronised (a stage waits for CUDA; reading an exit
copies the probabilities to the CPU), so the time around each call is its real compute time.

For serving, every batch norm that follows a convolution in an `nn.Sequential` is folded into it (on
a copy of the model; see `fold_batch_norms`), and on the CPU the model and its inputs use the
channels-last memory layout, which oneDNN's convolutions run markedly faster. Both give the same
results to float rounding; together they take about a quarter off the compute of the shipped model
on this CPU.

Precision: "auto" (the default) runs the model in bfloat16 on a CPU with native bfloat16 arithmetic
(AVX512-BF16 or AMX), where oneDNN's convolutions take about 40% less time at batch 8, and in float32
everywhere else; "fp32" and "bf16" force one. Exit heads end in float32 (softmax, confidences). On
the shipped checkpoint bfloat16 changes top-1 accuracy by at most 0.09 points at any exit over the
10,000 CIFAR-10 test images (99.5% or more of the answers identical); set "fp32" for another model
until it has been checked the same way.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from elastic_anytime.models.checkpoint import Checkpoint
from elastic_anytime.models.elastic import ElasticNet, Features
from elastic_anytime.service.engine.preprocess import Preprocessor

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU. Asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def native_bf16_cpu() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (emulated bfloat16 is slower than float32)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and torch.backends.mkldnn.is_available()


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """'auto' → bfloat16 on a CPU with native bfloat16, else float32; 'fp32' / 'bf16' as asked."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cpu" and native_bf16_cpu() else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def _fold_sequential(sequence: nn.Sequential) -> None:
    """Fold, in place, each batch norm that directly follows a convolution inside `sequence`: there the
    convolution's output feeds the norm and nothing else, so the fold is exact (to float rounding)."""
    names = list(sequence._modules)
    for first, second in itertools.pairwise(names):
        conv, norm = sequence._modules[first], sequence._modules[second]
        if (
            isinstance(conv, nn.Conv2d)
            and isinstance(norm, nn.BatchNorm2d)
            and norm.running_mean is not None
            and norm.running_var is not None
            and conv.out_channels == norm.num_features
        ):
            sequence._modules[first] = fuse_conv_bn_eval(conv, norm)
            sequence._modules[second] = nn.Identity()


def fold_batch_norms(model: ElasticNet, input_size: tuple[int, ...]) -> ElasticNet:
    """A CPU copy of `model` (in eval mode) with each batch norm that directly follows a convolution in an
    `nn.Sequential` folded into it, and dropout (the identity in eval mode) removed. No tracing (torch.fx
    patches nn.Module calls process-wide while it traces, which broke models and transforms running in
    other threads during a hot reload): only containers whose data flow is their order. The copy is
    checked against the original at every exit on a random input of `input_size`; should they differ,
    the unfolded copy is served.

    The fold and the check run on CPU copies, whatever device `model` is on (the caller moves the result):
    the random input lives on the CPU, and CUDA convolutions may use TF32, whose rounding the check's
    float32 tolerance would read as a wrong fold."""
    reference = copy.deepcopy(model).cpu().eval()
    folded = copy.deepcopy(reference)
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            _fold_sequential(module)
        for name, child in module._modules.items():
            if isinstance(child, nn.Dropout):  # the identity in eval mode, yet one more torch call (GIL) per head
                module._modules[name] = nn.Identity()
    with torch.no_grad():
        x = torch.rand(2, *input_size)
        for expected, result in zip(reference(x), folded(x), strict=True):
            tolerance = 1e-5 * max(1.0, float(expected.abs().max()))
            if not torch.allclose(result, expected, rtol=1e-4, atol=tolerance):
                log.warning("folding batch norms changed the model's outputs; serving it unfolded")
                return reference
    return folded


def head_costs(meta: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(direct MFLOPs of each exit, MFLOPs of each exit head) from checkpoint metadata.

    `mflops[k]` is stem + stages 0..k + head k; `anytime_mflops[k]` adds heads 0..k-1, so head k
    costs the growth of that difference from k to k+1. The final head never runs on the way to
    another exit, so its own cost is not needed (it is inside `mflops` of the final exit).
    """
    exits = meta["exits"]
    direct = [float(e["mflops"]) for e in exits]
    earlier_heads = [float(e.get("anytime_mflops", e["mflops"])) - float(e["mflops"]) for e in exits]
    heads = [max(0.0, earlier_heads[k + 1] - earlier_heads[k]) for k in range(len(exits) - 1)] + [0.0]
    return direct, heads


class ModelRunner:
    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        precision: str = "fp32",
        channels_last: bool | None = None,
        fold: bool = True,
    ) -> None:
        self.device = device
        self.dtype = resolve_precision(precision, device)
        self.channels_last = device.type == "cpu" if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.meta = checkpoint.meta
        self.classes = checkpoint.classes
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        model = fold_batch_norms(checkpoint.model, self.input_size) if fold else checkpoint.model.eval()
        self.model = model.to(device=device, dtype=self.dtype).to(memory_format=self.memory_format)
        self.num_exits = self.model.num_exits
        # what a stage-by-stage run that reads every exit has spent once exit k answers
        self.exit_mflops = [float(e.get("anytime_mflops", e["mflops"])) for e in self.meta["exits"]]
        # what it spends when it reads only the exit it answers from, and what each earlier head read adds
        self.direct_mflops, self.head_mflops = head_costs(self.meta)
        # per-exit softmax temperatures fitted on held-out images; checkpoints without them use 1
        self.temperatures = [float(e.get("temperature", 1.0)) for e in self.meta["exits"]]
        self._preprocess = Preprocessor(self.input_size, self.meta["mean"], self.meta["std"])
        self._staging: torch.Tensor | None = None  # pinned host memory for the copies to CUDA (`batch`)

    @property
    def precision(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    @property
    def exit_names(self) -> list[str]:
        """The model's exit names (as `service.http.model_card.ModelCard.exit_names`: the front end reads either)."""
        return self.model.exit_names

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def min_side(self) -> int:
        return min(self.input_size[1:])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A decoded PIL image → the normalised (C, H, W) float32 array the model takes (service.engine.preprocess:
        evaluation's transform without torch, so that a front end needs none)."""
        return self._preprocess(image)

    @torch.inference_mode()
    def batch(self, tensors: list[Any]) -> torch.Tensor:
        """Model inputs, each (C, H, W): NumPy arrays from a front end, or tensors → one batch on the device.
        To CUDA they are stacked straight into pinned host memory: the copy then runs as DMA, asynchronously,
        without a hidden staging copy (the stage that follows synchronises, so the buffer is free again)."""
        if self.device.type == "cuda":
            stacked = self._pinned(len(tensors), tensors[0].shape)
            if isinstance(tensors[0], np.ndarray):
                np.stack(tensors, out=stacked.numpy())
            else:
                torch.stack([t.to(torch.float32) for t in tensors], out=stacked)
        elif isinstance(tensors[0], np.ndarray):
            stacked = torch.from_numpy(tensors[0][None] if len(tensors) == 1 else np.stack(tensors))
        else:
            stacked = tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)
        stacked = stacked.to(self.device, dtype=self.dtype, non_blocking=True)
        return stacked.contiguous(memory_format=self.memory_format)

    def _pinned(self, rows: int, shape: tuple[int, ...]) -> torch.Tensor:
        """A (rows, *shape) float32 view of a page-locked host buffer, grown when a batch needs more."""
        size = rows * math.prod(shape)
        if self._staging is None or self._staging.numel() < size:
            self._staging = torch.empty(size, dtype=torch.float32).pin_memory()
        return self._staging[:size].view(rows, *shape)

    @torch.inference_mode()
    def stage(self, index: int, features: Features) -> Features:
        """Stage `index` (stage 0 applies the stem): the features for its exit head and the next stage."""
        features = self.model.run_stage(index, features)
        self._sync()
        return features

    @torch.inference_mode()
    def read_exit(
        self, index: int, features: Features, rows: list[int] | None = None
    ) -> tuple[torch.Tensor, list[float], list[int]]:
        """Exit head `index` on `rows` of the batch (all if None): (CPU probs, confidences, class ids), one per row."""
        if rows is not None:
            features = self.select(features, rows)
        logits = self.model.run_exit(index, features)
        if self.temperatures[index] != 1.0:  # calibrated confidences: min_confidence means what it says
            logits = logits / self.temperatures[index]
        # as few torch calls as possible: under load each one may wait for the GIL (docs/performance.md)
        probs = torch.softmax(logits, dim=1, dtype=torch.float32)
        if probs.device.type != "cpu":
            probs = probs.cpu()
        confidence, class_id = probs.max(dim=1)
        return probs, confidence.tolist(), class_id.tolist()

    @torch.inference_mode()
    def select(self, features: Features, rows: list[int]) -> Features:
        """Keep only `rows` of the batch: requests that stopped leave it. A network may pass several tensors
        between stages (maps at several scales, earlier logits); each keeps the same rows."""
        if isinstance(features, torch.Tensor):
            return self._rows(features, torch.tensor(rows, device=features.device))
        index = torch.tensor(rows, device=features[0].device)
        return tuple(self._rows(tensor, index) for tensor in features)

    def _rows(self, tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        picked = tensor.index_select(0, index)
        # channels-last applies to image-like (N, C, H, W) tensors only
        return picked.contiguous(memory_format=self.memory_format) if picked.dim() == 4 else picked

    def top_k(self, probs: torch.Tensor, row: int, k: int) -> list[tuple[int, float]]:
        values, indices = probs[row].topk(min(k, probs.shape[1]))
        return list(zip(indices.tolist(), values.tolist(), strict=True))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_pass(self, batch_size: int) -> list[tuple[float, float]]:
        """One pass on random input that reads every exit; (stage seconds, head seconds) per exit (calibration)."""
        return list(self.time_steps(batch_size))

    @torch.inference_mode()
    def time_steps(self, batch_size: int) -> Iterator[tuple[float, float]]:
        """`time_pass` one exit at a time, so that a caller can stop between exits (the engine's idle refresh)."""
        inputs = list(torch.randn(batch_size, *self.input_size))
        start = time.perf_counter()
        features = self.batch(inputs)  # stage 0 includes the copy to the device, as the engine times it
        for k in range(self.num_exits):
            if k:
                start = time.perf_counter()
            features = self.stage(k, features)
            middle = time.perf_counter()
            self.read_exit(k, features)
            yield middle - start, time.perf_counter() - middle
