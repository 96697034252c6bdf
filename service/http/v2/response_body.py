"""An Open Inference Protocol inference response on the wire: outputs as JSON data, or as raw bytes after
the JSON header (the binary tensor extension: `binary_data_size` per output, `Inference-Header-Content-Length`
for the header's length), each output as its request asked. Pure: no HTTP, no engine."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY_TYPES = {"FP32": "<f4", "INT32": "<i4", "BOOL": "?"}


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str  # FP32, INT32, BOOL or BYTES
    shape: list[int]
    values: list[Any]  # row-major, flat: numbers, booleans, or str for BYTES
    binary: bool


def pack_bytes(values: list[str]) -> bytes:
    """Triton's BYTES serialisation: each element a 4-byte little-endian length, then its UTF-8 bytes."""
    parts = []
    for value in values:
        encoded = value.encode()
        parts.append(struct.pack("<I", len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def _raw(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        return pack_bytes(tensor.values)
    return np.asarray(tensor.values, dtype=_NUMPY_TYPES[tensor.datatype]).tobytes()


def encode_response(header: dict[str, Any], outputs: list[OutputTensor]) -> tuple[bytes, dict[str, str], str]:
    """(body, extra HTTP headers, media type) for `header` (model_name, model_version, id, parameters) and
    `outputs`. JSON alone when no output is binary; else the JSON header, then each binary output's bytes."""
    described, blobs = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.binary:
            blob = _raw(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor.values
        described.append(entry)
    text = json.dumps({**header, "outputs": described}, separators=(",", ":")).encode()
    if not blobs:
        return text, {}, "application/json"
    return b"".join([text, *blobs]), {HEADER_LENGTH: str(len(text))}, "application/octet-stream"
