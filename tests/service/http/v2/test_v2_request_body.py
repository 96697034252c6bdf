"""The Open Inference Protocol's wire format, off the wire and back (service.http.v2.request_body, response_body):
what Triton's client sends parses to the images and options it carries, and every malformed request is a
400 (413 for an image over the limit) that says what was wrong."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.v2.request_body import (
    InferRequest,
    RequestedOutput,
    parse_header_length,
    parse_infer_request,
)
from elastic_anytime.service.http.v2.response_body import HEADER_LENGTH, OutputTensor, encode_response

OUTPUTS = ("probabilities", "label", "exit")
SHAPE = (3, 4, 4)
IMAGES = [b"\x89PNG first", b"\xff\xd8 second"]


def parse(header: dict, binary: bytes | None = None, max_images: int = 4, max_bytes: int = 1000) -> InferRequest:
    text = json.dumps(header).encode()
    body = text if binary is None else text + binary
    return parse_infer_request(body, None if binary is None else len(text), outputs=OUTPUTS, input_shape=SHAPE,
                               max_images=max_images, max_image_bytes=max_bytes)  # fmt: skip


def refused(header: dict, binary: bytes | None = None, **kwargs: int) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(header, binary, **kwargs)
    return caught.value


def image_input(images: list[bytes], binary: bool) -> tuple[dict, bytes | None]:
    if binary:
        raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
        tensor = {
            "name": "image",
            "datatype": "BYTES",
            "shape": [len(images)],
            "parameters": {"binary_data_size": len(raw)},
        }
        return tensor, raw
    data = [base64.b64encode(i).decode() for i in images]
    return {"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": data}, None


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_images_and_budget_parameters_come_through(binary: bool) -> None:
    tensor, raw = image_input(IMAGES, binary)
    header = {"id": "r1", "inputs": [tensor], "parameters": {"budget_ms": 5, "min_confidence": 0.9, "timeout": 7}}
    request = parse(header, raw)
    assert request.images == IMAGES and request.pixels is None and request.count == 2
    assert request.id == "r1"
    assert request.options == {"budget_ms": 5, "min_confidence": 0.9}  # timeout is the client's, ignored
    assert [o.name for o in request.outputs] == list(OUTPUTS)  # none asked: all, in JSON
    assert not any(o.binary for o in request.outputs)


def test_pixels_in_json_nested_or_flat_and_in_binary_are_the_same_tensor() -> None:
    pixels = np.arange(2 * 48, dtype=np.float32).reshape(2, *SHAPE) / 7
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [2, *SHAPE]}
    nested = parse({"inputs": [{**tensor, "data": pixels.tolist()}]}).pixels
    flat = parse({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).pixels
    raw = pixels.astype("<f4").tobytes()
    binary = parse({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}, raw).pixels
    for got in (nested, flat, binary):
        assert got is not None and got.dtype == np.float32 and np.array_equal(got, pixels)


def test_outputs_as_asked_and_binary_data_output_as_default() -> None:
    tensor, raw = image_input(IMAGES, True)
    asked = parse({"inputs": [tensor], "outputs": [{"name": "exit", "parameters": {"binary_data": True}},
                                                   {"name": "label"}]}, raw).outputs  # fmt: skip
    assert asked == [RequestedOutput("exit", True), RequestedOutput("label", False)]
    every = parse({"inputs": [tensor], "parameters": {"binary_data_output": True}}, raw).outputs
    assert every == [RequestedOutput(name, True) for name in OUTPUTS]


BAD_IMAGE = base64.b64encode(b"x").decode()
CASES = {
    "no-inputs": ({"parameters": {}}, None, 400, "inputs: Field required"),
    "empty-inputs": ({"inputs": []}, None, 400, "inputs"),
    "two-inputs": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}] * 2},
                   None, 400, "exactly one input"),
    "unknown-input": ({"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}]},
                      None, 400, "unknown input 'INPUT0'"),
    "image-as-fp32": ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
                      None, 400, "must be BYTES, not FP32"),
    "image-2d": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": [BAD_IMAGE]}]},
                 None, 400, "must have 1 dimensions"),
    "no-datatype": ({"inputs": [{"name": "image", "shape": [1], "data": [BAD_IMAGE]}]}, None, 400,
                    "inputs.0.datatype: Field required"),
    "shape-not-ints": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": ["1"], "data": [BAD_IMAGE]}]},
                       None, 400, "inputs.0.shape.0"),
    "bad-base64": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [BAD_IMAGE, "QUJD=="]}]},
                   None, 400, "'image[1]' field is not valid base64"),
    "not-strings": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [3]}]},
                    None, 400, "list of base64 strings"),
    "count-mismatch": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": [BAD_IMAGE]}]},
                       None, 400, "holds 1 elements; its shape says 3"),
    "too-many-images": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [5], "data": [BAD_IMAGE] * 5}]},
                        None, 400, "holds 5 images; the limit is 4"),
    "zero-images": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [0], "data": []}]},
                    None, 400, "holds no image"),
    "empty-image": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}]},
                    None, 400, "image[0] is empty"),
    "image-too-large": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "data": [base64.b64encode(b"x" * 1001).decode()]}]}, None, 413, "limit"),
    "no-data": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}, None, 400,
                "neither data nor binary_data_size"),
    "pixels-wrong-shape": ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0]}]},
                           None, 400, "must have shape [N, 3, 4, 4]"),
    "pixels-as-int": ({"inputs": [{"name": "pixels", "datatype": "INT32", "shape": [1, *SHAPE], "data": [0] * 48}]},
                      None, 400, "must be FP32, not INT32"),
    "pixels-too-few": ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, *SHAPE], "data": [0.0] * 47}]},
                       None, 400, "wrong number of values"),
    "pixels-strings": ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, *SHAPE], "data": ["0"] * 48}]},
                       None, 400, "must hold numbers, not str"),
    "pixels-nan": ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, *SHAPE],
                                "data": [float("nan")] * 48}]}, None, 400, "NaN or infinite"),
    "unknown-parameter": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}],
                           "parameters": {"budget_MS": 5}}, None, 400, "unknown request parameters budget_MS"),
    "unknown-output": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}],
                        "outputs": [{"name": "OUTPUT0"}]}, None, 400, "unknown output 'OUTPUT0'"),
    "classification": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}],
                        "outputs": [{"name": "label", "parameters": {"classification": 3}}]}, None, 400,
                       "classification extension is not supported"),
    "size-mismatch": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": 99}}]}, b"\x01\x00\x00\x00x", 400,
                      "binary_data_size 99, but 5 bytes follow"),
    "truncated-bytes": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 6}}]}, b"\x09\x00\x00\x00xy", 400,
                        "claims 9 bytes past its end"),
    "stray-binary": ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [BAD_IMAGE]}]},
                     b"junk", 400, "no input has binary_data_size"),
}  # fmt: skip


@pytest.mark.parametrize(("header", "binary", "status", "message"), CASES.values(), ids=CASES.keys())
def test_malformed_requests_are_refused_with_what_was_wrong(
    header: dict, binary: bytes | None, status: int, message: str
) -> None:
    error = refused(header, binary)
    assert error.status == status
    assert message in error.detail, error.detail


def test_not_json_and_binary_size_without_the_extension_header() -> None:
    with pytest.raises(ApiError, match="not valid JSON"):
        parse_infer_request(b"{nope", None, outputs=OUTPUTS, input_shape=SHAPE, max_images=4, max_image_bytes=10)
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 5}}]}).encode()  # fmt: skip
    with pytest.raises(ApiError, match="needs the Inference-Header-Content-Length"):
        parse_infer_request(header, None, outputs=OUTPUTS, input_shape=SHAPE, max_images=4, max_image_bytes=10)
    for raw in ("x", "0", "-3", "999"):
        with pytest.raises(ApiError) as caught:
            parse_header_length(raw, 100)
        assert caught.value.status == 400
    assert parse_header_length(None, 100) is None and parse_header_length("40", 100) == 40


def test_a_binary_response_puts_the_tensors_after_its_header() -> None:
    outputs = [
        OutputTensor("exit", "INT32", [2], [1, 4], binary=True),
        OutputTensor("label", "BYTES", [2], ["cat", "ship"], binary=False),
        OutputTensor("budget_met", "BOOL", [2], [True, False], binary=True),
    ]
    body, headers, media_type = encode_response({"model_name": "m", "model_version": "v"}, outputs)
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert media_type == "application/octet-stream"
    assert header["outputs"][0] == {"name": "exit", "datatype": "INT32", "shape": [2],
                                    "parameters": {"binary_data_size": 8}}  # fmt: skip
    assert header["outputs"][1]["data"] == ["cat", "ship"]
    assert body[length:] == np.array([1, 4], "<i4").tobytes() + b"\x01\x00"
    plain, headers, media_type = encode_response({"model_name": "m"}, [outputs[1]])
    assert (
        media_type == "application/json" and not headers and json.loads(plain)["outputs"][0]["data"] == ["cat", "ship"]
    )
