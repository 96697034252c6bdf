"""An Open Inference Protocol inference request off the wire: its JSON header, and with the binary tensor
extension (Triton's client sends it), the raw tensor bytes after the header, whose length the
`Inference-Header-Content-Length` HTTP header gives.

Inputs, exactly one of:
- `image`: BYTES [N], N encoded image files (PNG, JPEG, ...). Binary: each element as a 4-byte little-endian
  length and its bytes (Triton's BYTES serialisation). JSON: each element base64 (tritonclient's JSON mode
  sends only UTF-8 strings, so raw image bytes cannot travel there).
- `pixels`: FP32 [N, C, H, W], already preprocessed (resized, scaled to [0, 1], normalised with the
  checkpoint's mean and std), in JSON (flat or nested numbers) or binary (little-endian float32).

Pure: no HTTP, no engine. Every problem is an ApiError (400, or 413 for an image over the byte limit).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from elastic_anytime.service.http.base64_image import decode_base64_image
from elastic_anytime.service.http.errors import ApiError, field_errors, summary

IMAGE_INPUT, PIXELS_INPUT = "image", "pixels"
# request parameters of the budget (service.http.schemas.ClassifyOptions validates them)
BUDGET_PARAMETERS = ("budget_ms", "budget_mflops", "min_confidence")
# parameters Triton's client may send: binary_data_output is honoured; the others have no meaning here
# (priority: every request is ordered by its deadline; timeout: budget_ms is the budget) and are ignored
CLIENT_PARAMETERS = ("binary_data_output", "priority", "timeout")
_LENGTH = struct.Struct("<I")

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: dict[str, Scalar] | None = None
    data: Any = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    parameters: dict[str, Scalar] | None = None


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StrictStr | None = None
    parameters: dict[str, Scalar] | None = None
    inputs: list[_Tensor] = Field(..., min_length=1)
    outputs: list[_Output] | None = None


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool  # raw bytes after the JSON header (binary tensor extension) rather than JSON numbers


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    options: dict[str, Any]  # the budget parameters given (budget_ms, budget_mflops, min_confidence)
    images: list[bytes] | None  # the `image` input: encoded image files
    pixels: np.ndarray | None  # the `pixels` input: float32 [N, C, H, W]
    outputs: list[RequestedOutput]  # what to answer, in order

    @property
    def count(self) -> int:
        return len(self.images) if self.images is not None else len(self.pixels)  # type: ignore[arg-type]


def bad_request(detail: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, detail)


def parse_header_length(raw: str | None, body_length: int) -> int | None:
    """The `Inference-Header-Content-Length` header: the JSON header's length in the body (None: all JSON)."""
    if raw is None:
        return None
    try:
        length = int(raw)
    except ValueError:
        raise bad_request(f"Inference-Header-Content-Length {raw!r} is not a number") from None
    if not 0 < length <= body_length:
        raise bad_request(f"Inference-Header-Content-Length {length} is outside the body's {body_length} bytes")
    return length


def parse_infer_request(
    body: bytes,
    header_length: int | None,
    *,
    outputs: tuple[str, ...],
    input_shape: tuple[int, ...],
    max_images: int,
    max_image_bytes: int,
) -> InferRequest:
    """The request in `body`; `outputs` are the names this model answers with (all, when none are asked)."""
    header = _header(body if header_length is None else body[:header_length])
    binary = b"" if header_length is None else body[header_length:]
    if len(header.inputs) != 1:
        names = ", ".join(repr(t.name) for t in header.inputs)
        raise bad_request(f"send exactly one input, {IMAGE_INPUT!r} or {PIXELS_INPUT!r}; got {names}")
    tensor = header.inputs[0]
    raw = _binary_data(tensor, binary, header_length is not None)
    parameters = dict(header.parameters or {})
    images = pixels = None
    if tensor.name == IMAGE_INPUT:
        count = _batch_size(tensor, "BYTES", 1, max_images)
        images = _images(tensor, raw, count, max_image_bytes)
    elif tensor.name == PIXELS_INPUT:
        count = _batch_size(tensor, "FP32", 1 + len(input_shape), max_images)
        pixels = _pixels(tensor, raw, (count, *input_shape))
    else:
        raise bad_request(f"unknown input {tensor.name!r}: send {IMAGE_INPUT!r} (BYTES) or {PIXELS_INPUT!r} (FP32)")
    unknown = sorted(set(parameters) - set(BUDGET_PARAMETERS) - set(CLIENT_PARAMETERS))
    if unknown:
        accepted = ", ".join(BUDGET_PARAMETERS + CLIENT_PARAMETERS)
        raise bad_request(f"unknown request parameters {', '.join(unknown)}; accepted: {accepted}")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise bad_request("the binary_data_output parameter must be true or false")
    options = {key: parameters[key] for key in BUDGET_PARAMETERS if key in parameters}
    return InferRequest(header.id, options, images, pixels, _outputs(header.outputs, outputs, binary_default))


def _header(raw: bytes) -> _Header:
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise bad_request(f"the inference request is not valid JSON: {err}", "malformed_json") from None
    if not isinstance(payload, dict):
        raise bad_request(f"the inference request must be a JSON object, not {type(payload).__name__}")
    try:
        return _Header.model_validate(payload, strict=True)
    except ValidationError as err:
        raise bad_request(summary(field_errors(err.errors())), "invalid_request") from None


def _binary_data(tensor: _Tensor, binary: bytes, extension: bool) -> bytes | None:
    """The tensor's raw bytes when it travels in binary (then all of them: one input), else None."""
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if binary:
            raise bad_request(f"{len(binary)} bytes follow the JSON header but no input has binary_data_size")
        return None
    if not extension:
        raise bad_request("binary_data_size needs the Inference-Header-Content-Length header (binary tensor data)")
    if tensor.data is not None:
        raise bad_request(f"input {tensor.name!r} has both data and binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size != len(binary):
        raise bad_request(
            f"input {tensor.name!r}: binary_data_size {size!r}, but {len(binary)} bytes follow the header"
        )
    return binary


def _batch_size(tensor: _Tensor, datatype: str, dims: int, max_images: int) -> int:
    if tensor.datatype != datatype:
        raise bad_request(f"input {tensor.name!r} must be {datatype}, not {tensor.datatype}")
    if len(tensor.shape) != dims:
        raise bad_request(f"input {tensor.name!r} must have {dims} dimensions, not shape {tensor.shape}")
    count = tensor.shape[0]
    if count < 1:
        raise bad_request(f"input {tensor.name!r} holds no image (shape {tensor.shape})")
    if count > max_images:
        raise bad_request(
            f"input {tensor.name!r} holds {count} images; the limit is {max_images} per request", "too_many_images"
        )
    return count


def _images(tensor: _Tensor, raw: bytes | None, count: int, max_bytes: int) -> list[bytes]:
    images = _unpack_bytes(raw, count) if raw is not None else _base64_images(tensor.data, count, max_bytes)
    for index, image in enumerate(images):
        if not image:
            raise bad_request(f"image[{index}] is empty", "empty_image")
        if len(image) > max_bytes:
            raise ApiError(413, "image_too_large", f"image[{index}] is {len(image)} bytes; the limit is {max_bytes}")
    return images


def _unpack_bytes(raw: bytes, count: int) -> list[bytes]:
    """Triton's BYTES serialisation: each element a 4-byte little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise bad_request("the BYTES tensor ends inside an element's length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise bad_request(f"the BYTES tensor's element {len(elements)} claims {length} bytes past its end")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise bad_request(f"the BYTES tensor holds {len(elements)} elements; its shape says {count}")
    return elements


def _base64_images(data: Any, count: int, max_bytes: int) -> list[bytes]:
    if data is None:
        raise bad_request(f"input {IMAGE_INPUT!r} has neither data nor binary_data_size")
    if isinstance(data, list) and len(data) == count and all(isinstance(d, list) and len(d) == 1 for d in data):
        data = [d[0] for d in data]  # nested as [[b64], [b64], ...]: the same tensor
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise bad_request(f"input {IMAGE_INPUT!r} in JSON must be a list of base64 strings (one per image)")
    if len(data) != count:
        raise bad_request(f"input {IMAGE_INPUT!r} holds {len(data)} elements; its shape says {count}")
    return [decode_base64_image(text, max_bytes, field=f"image[{i}]") for i, text in enumerate(data)]


def _pixels(tensor: _Tensor, raw: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    if list(shape) != tensor.shape:
        raise bad_request(f"input {PIXELS_INPUT!r} must have shape [N, {', '.join(map(str, shape[1:]))}]: "
                          f"this model's input; got {tensor.shape}")  # fmt: skip
    expected = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * expected:
            raise bad_request(f"input {PIXELS_INPUT!r} has {len(raw)} bytes; shape {list(shape)} in FP32 needs "
                              f"{4 * expected}")  # fmt: skip
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        if tensor.data is None:
            raise bad_request(f"input {PIXELS_INPUT!r} has neither data nor binary_data_size")
        array = _numbers(tensor.data, expected)
    if not np.isfinite(array).all():
        raise bad_request(f"input {PIXELS_INPUT!r} holds NaN or infinite values")
    return array.reshape(shape)


def _numbers(data: Any, expected: int) -> np.ndarray:
    """JSON numbers, flat or nested, as float32; booleans and strings are not numbers here."""
    flat: list[Any] = []
    stack = [data]
    while stack:  # iterative: a deeply nested list must not exhaust the recursion limit
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            flat.append(item)
        else:
            raise bad_request(f"input {PIXELS_INPUT!r} must hold numbers, not {type(item).__name__}")
        if len(flat) > expected:
            break
    if len(flat) != expected:
        raise bad_request(f"input {PIXELS_INPUT!r} holds a wrong number of values; its shape needs {expected}")
    try:
        return np.asarray(flat, dtype=np.float32)
    except OverflowError:
        raise bad_request(f"input {PIXELS_INPUT!r} holds a number out of the FP32 range") from None


def _outputs(asked: list[_Output] | None, available: tuple[str, ...], binary_default: bool) -> list[RequestedOutput]:
    if not asked:
        return [RequestedOutput(name, binary_default) for name in available]
    chosen: list[RequestedOutput] = []
    for output in asked:
        if output.name not in available:
            raise bad_request(f"unknown output {output.name!r}; this model answers {', '.join(available)}")
        if any(c.name == output.name for c in chosen):
            raise bad_request(f"output {output.name!r} is asked for twice")
        parameters = dict(output.parameters or {})
        if parameters.pop("classification", 0):
            raise bad_request("the classification extension is not supported: ask for 'probabilities' and 'label'")
        binary = parameters.pop("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise bad_request(f"output {output.name!r}: binary_data must be true or false")
        if parameters:
            raise bad_request(f"output {output.name!r}: unknown parameters {', '.join(sorted(parameters))}")
        chosen.append(RequestedOutput(output.name, binary))
    return chosen
