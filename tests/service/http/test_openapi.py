"""The published schema says what the server accepts: the base64 pattern matches exactly the strings
the JSON route decodes, and the limits from settings and the model are in the request schemas."""

from __future__ import annotations

import base64
import re

import pytest

from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.main import create_app
from elastic_anytime.service.http.openapi import BASE64_PATTERN
from elastic_anytime.service.http.request_parsing import b64_image
from elastic_anytime.service.settings import Settings

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()

STRINGS = [
    PNG_B64,
    PNG_B64.rstrip("="),
    "QQ==",
    "QUI=",
    "QUJD",
    "Q",
    "QQ=",
    "QQ===",
    "QUJD==",
    "QUJD====",
    "QR==",
    "====",
    "=QQ=",
    "QU JD",
    "QU\r\nJD\n",
    " QUJD ",
    "QU\tJ D==",
    "QUJD\u2003",
    "QU\x0bJD",
    "QUJD\x1c",
    "data:image/png;base64," + PNG_B64,
    "data:," + "QUJD",
    "data:;base64,QQ",
    "data:image/png;base64",
    " data:image/png;base64,QUJD",
    "QU-_",
    "é" * 4,
    "",
]


def server_accepts(text: str) -> bool:
    try:
        b64_image(text, 10**6)
    except ApiError:
        return False
    return True


@pytest.mark.parametrize("text", STRINGS, ids=[repr(s)[:30] for s in STRINGS])
def test_base64_pattern_matches_what_the_server_decodes(text: str) -> None:
    assert (re.fullmatch(BASE64_PATTERN, text) is not None) == server_accepts(text)


def test_limits_are_published() -> None:
    settings = Settings.from_env({}, max_budget_ms=500.0, max_budget_mflops=123.0)
    app = create_app(settings)
    body = app.openapi()["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]
    json_body = body["application/json"]["schema"]
    assert form["additionalProperties"] is False and json_body["additionalProperties"] is False
    assert form["properties"]["budget_ms"]["maximum"] == 500.0
    assert form["properties"]["budget_mflops"]["maximum"] == 123.0
    assert "anyOf" not in form["properties"]["top_k"] and form["properties"]["top_k"]["type"] == "integer"
    assert json_body["properties"]["budget_ms"]["anyOf"][0]["maximum"] == 500.0
    assert json_body["properties"]["image"]["pattern"] == BASE64_PATTERN
