"""The outputs of the served model in the Open Inference Protocol: one value per image of the request (the
probabilities one row per image), from the engine's answers."""

from __future__ import annotations

from dataclasses import dataclass

from elastic_anytime.service.http.v2.request_body import RequestedOutput
from elastic_anytime.service.http.v2.response_body import OutputTensor

PROBABILITIES = "probabilities"
# name → (datatype, what it is); every output but the probabilities has shape [N]
OUTPUTS: dict[str, tuple[str, str]] = {
    PROBABILITIES: ("FP32", "softmax probabilities at the exit that answered, [N, classes] (calibrated)"),
    "label": ("BYTES", "top class at the exit that answered"),
    "confidence": ("FP32", "its probability"),
    "exit": ("INT32", "0-based index of the exit that answered"),
    "mflops": ("FP32", "compute spent on the image"),
    "latency_ms": ("FP32", "from the request's first byte to the image's answer back from the engine"),
    "budget_met": ("BOOL", "latency_ms <= budget_ms (true without a time budget)"),
    "stopped_by": ("BYTES", "final, confident, compute or deadline"),
}
OUTPUT_NAMES = tuple(OUTPUTS)


@dataclass(frozen=True)
class ImageAnswer:
    label: str
    confidence: float
    exit: int
    mflops: float
    latency_ms: float
    budget_met: bool
    stopped_by: str
    probabilities: list[float] | None  # None unless the probabilities were asked for


def shape_of(name: str, images: int, classes: int) -> list[int]:
    return [images, classes] if name == PROBABILITIES else [images]


def output_tensors(answers: list[ImageAnswer], asked: list[RequestedOutput], classes: int) -> list[OutputTensor]:
    """The asked outputs, in the order asked."""
    tensors = []
    for output in asked:
        if output.name == PROBABILITIES:
            values: list = [p for answer in answers for p in (answer.probabilities or [0.0] * classes)]
        else:
            values = [getattr(answer, output.name) for answer in answers]
        datatype = OUTPUTS[output.name][0]
        tensors.append(OutputTensor(output.name, datatype, shape_of(output.name, len(answers), classes), values,
                                    output.binary))  # fmt: skip
    return tensors
