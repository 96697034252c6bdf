"""Base64 image payloads, decoded exactly as the published schema's pattern says (service.http.openapi.BASE64_PATTERN):
standard padded base64, optionally a data: URL, ASCII whitespace allowed. Shared by /v1's JSON body and the
Open Inference Protocol's JSON BYTES tensors."""

from __future__ import annotations

import base64
import binascii

from elastic_anytime.service.http.errors import ApiError

_ASCII_WHITESPACE = str.maketrans("", "", " \t\r\n")


def decode_base64_image(text: str, max_bytes: int, field: str = "image") -> bytes:
    """The image bytes in `text`; ApiError 400 `bad_base64` (naming `field`) or 413 `image_too_large`."""
    bad = ApiError(400, "bad_base64", f"the {field!r} field is not valid base64")
    if text.startswith("data:"):
        _, comma, text = text.partition(",")
        if not comma:
            raise bad
    text = text.translate(_ASCII_WHITESPACE)  # line-wrapped base64; nothing else (as the schema's pattern says)
    if len(text) * 3 // 4 > max_bytes + 2:
        raise ApiError(413, "image_too_large", f"the image exceeds the limit of {max_bytes} bytes")
    # b64decode also takes "QUJD==" and "QUJD====" (padding past a full group): not base64 by the schema
    if len(text) % 4 or len(text) - len(text.rstrip("=")) > 2:
        raise bad
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
