"""Every kind of bad input gets its 4xx with a JSON body that says what was wrong, and the server
stays healthy. One real server for the module, with a small byte limit so 413 needs little data."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from e2e_server import ServerProcess, serve
from PIL import Image
from reliability_helpers import read_response

MAX_IMAGE_BYTES = 256 * 1024


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


PNG = encode(Image.new("RGB", (40, 30), (200, 30, 30)), "PNG")
JPEG = encode(Image.new("RGB", (200, 200), (20, 30, 200)), "JPEG")
BOMB = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 MP in a few kB: over the default 40 MP limit
NOISE = Image.frombytes("RGB", (400, 400), bytes(range(256)) * 1875)
BIG_BMP = encode(NOISE, "BMP")  # 480 kB: over the byte limit
B64 = base64.b64encode(PNG).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(env={"ELASTIC_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES)}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


def multipart(image: bytes = PNG, **fields: str) -> dict:
    return {"files": {"image": ("img.png", image, "image/png")}, "data": fields}


def raw(content: bytes, content_type: str) -> dict:
    return {"content": content, "headers": {"content-type": content_type}}


def text_only_form(**fields: str) -> dict:
    """A multipart body with text fields only (httpx would send those urlencoded)."""
    parts = [f'--b0undary\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return raw(("".join(parts) + "--b0undary--\r\n").encode(), "multipart/form-data; boundary=b0undary")


MULTIPART_CASES = {
    # image bytes
    "not-an-image": (multipart(b"this is plain text, not an image"), 400, "not_an_image"),
    "truncated-png": (multipart(PNG[:50]), 400, "bad_image"),
    "truncated-jpeg": (multipart(JPEG[: len(JPEG) // 3]), 400, "bad_image"),
    "empty-file": (multipart(b""), 400, "empty_image"),
    "unsupported-ico": (multipart(encode(Image.new("RGB", (16, 16)), "ICO")), 415, "unsupported_format"),
    "decompression-bomb": (multipart(BOMB), 413, "too_many_pixels"),
    "over-byte-limit": (multipart(BIG_BMP), 413, None),
    # budgets and options
    "budget-zero": (multipart(budget_ms="0"), 422, "invalid_field"),
    "budget-negative": (multipart(budget_ms="-5"), 422, "invalid_field"),
    "budget-nan": (multipart(budget_ms="nan"), 422, "invalid_field"),
    "budget-inf": (multipart(budget_ms="inf"), 422, "invalid_field"),
    "budget-string": (multipart(budget_ms="fast"), 422, "invalid_field"),
    "budget-absurd": (multipart(budget_ms="1e12"), 422, "invalid_field"),
    "mflops-zero": (multipart(budget_mflops="0"), 422, "invalid_field"),
    "mflops-absurd": (multipart(budget_mflops="1e30"), 422, "invalid_field"),
    "confidence-above-one": (multipart(min_confidence="1.5"), 422, "invalid_field"),
    "top-k-zero": (multipart(top_k="0"), 422, "invalid_field"),
    "top-k-too-many": (multipart(top_k="11"), 422, "invalid_field"),
    "top-k-fraction": (multipart(top_k="2.5"), 422, "invalid_field"),
    "unknown-field": (multipart(budget="5"), 422, "invalid_field"),
    # form shape
    "no-image-field": (text_only_form(budget_ms="5"), 422, "invalid_field"),
    "image-as-text": (text_only_form(image="not a file"), 422, "invalid_field"),
    "urlencoded-form": ({"data": {"budget_ms": "5"}}, 415, "unsupported_media_type"),
    "two-images": (
        {"files": [("image", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))]},
        400,
        "malformed_multipart",
    ),
    "bad-boundary": (raw(b"--xyz\r\ngarbage", "multipart/form-data; boundary=abc"), 400, None),
    "no-boundary": (raw(b"--xyz\r\n", "multipart/form-data"), 400, "malformed_multipart"),
}

JSON_CASES = {
    "empty-body": (raw(b"", "application/json"), 400, "empty_body"),
    "malformed-json": (raw(b'{"image": ', "application/json"), 400, "malformed_json"),
    "json-array": ({"json": [B64]}, 422, "invalid_body"),
    "json-missing-image": ({"json": {"budget_ms": 5}}, 422, "invalid_field"),
    "json-image-number": ({"json": {"image": 123}}, 422, "invalid_field"),
    "json-bad-base64": ({"json": {"image": "***not base64***"}}, 400, "bad_base64"),
    "json-base64-not-image": ({"json": {"image": base64.b64encode(b"hello").decode()}}, 400, "not_an_image"),
    "json-image-too-large": ({"json": {"image": base64.b64encode(b"x" * 300_000).decode()}}, 413, "image_too_large"),
    "json-budget-string": ({"json": {"image": B64, "budget_ms": "5"}}, 422, "invalid_field"),
    "json-budget-bool": ({"json": {"image": B64, "budget_ms": True}}, 422, "invalid_field"),
    "json-budget-zero": ({"json": {"image": B64, "budget_ms": 0}}, 422, "invalid_field"),
    "json-budget-negative": ({"json": {"image": B64, "budget_ms": -1}}, 422, "invalid_field"),
    "json-budget-nan": (raw(b'{"image": "' + B64.encode() + b'", "budget_ms": NaN}', "application/json"), 422, None),
    "json-budget-infinity": (
        raw(b'{"image": "' + B64.encode() + b'", "budget_ms": Infinity}', "application/json"),
        422,
        None,
    ),
    "json-budget-overflow": (
        raw(b'{"image": "' + B64.encode() + b'", "budget_ms": 1e400}', "application/json"),
        422,
        None,
    ),
    "json-budget-absurd": ({"json": {"image": B64, "budget_ms": 1e15}}, 422, "invalid_field"),
    "json-budget-list": ({"json": {"image": B64, "budget_ms": [5]}}, 422, "invalid_field"),
    "json-top-k-string": ({"json": {"image": B64, "top_k": "3"}}, 422, "invalid_field"),
    "json-unknown-field": ({"json": {"image": B64, "budgetms": 5}}, 422, "invalid_field"),
    "json-not-utf8": (raw(b"\xff\xfe{", "application/json"), 400, "malformed_json"),
}

OTHER_CASES = {
    "text-plain": (raw(b"hello", "text/plain"), 415, "unsupported_media_type"),
    "no-content-type": (raw(PNG, ""), 415, "unsupported_media_type"),
    "raw-png-body": (raw(PNG, "image/png"), 415, "unsupported_media_type"),
}

CASES = {**MULTIPART_CASES, **JSON_CASES, **OTHER_CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_4xx(client: httpx.Client, name: str) -> None:
    request, status, code = CASES[name]
    response = client.post("/v1/classify", **request)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body
    if status == 422:
        assert body.get("errors") or body["error"] == "invalid_body"


# /v1/classify/raw: the image is the body, the options are query parameters
RAW_CASES = {
    "raw-text-plain": ("", raw(PNG, "text/plain"), 415, "unsupported_media_type"),
    "raw-no-content-type": ("", raw(PNG, ""), 415, "unsupported_media_type"),
    "raw-multipart": ("", raw(PNG, "multipart/form-data; boundary=x"), 415, "unsupported_media_type"),
    "raw-empty": ("", raw(b"", "image/png"), 400, "empty_image"),
    "raw-not-an-image": ("", raw(b"hello", "application/octet-stream"), 400, "not_an_image"),
    "raw-truncated": ("", raw(JPEG[:200], "image/jpeg"), 400, "bad_image"),
    "raw-bomb": ("", raw(BOMB, "image/png"), 413, "too_many_pixels"),
    "raw-too-large": ("", raw(BIG_BMP, "image/bmp"), 413, "image_too_large"),
    "raw-budget-string": ("?budget_ms=fast", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-empty": ("?budget_ms=", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-zero": ("?budget_ms=0", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-nan": ("?budget_ms=nan", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-absurd": ("?budget_ms=1e15", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-twice": ("?budget_ms=5&budget_ms=50", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-top-k-too-large": ("?top_k=11", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-unknown-parameter": ("?budgetms=5", raw(PNG, "image/png"), 422, "invalid_field"),
    "raw-budget-too-small": ("?budget_ms=0.001", raw(PNG, "image/png"), 422, "budget_too_small"),
}


@pytest.mark.parametrize("name", list(RAW_CASES))
def test_bad_raw_input_gets_a_clear_4xx(client: httpx.Client, name: str) -> None:
    query, request, status, code = RAW_CASES[name]
    response = client.post("/v1/classify/raw" + query, **request)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"], body
    if code == "invalid_field":
        assert body["errors"] and body["errors"][0]["field"] in query, body


def test_validation_errors_name_the_field(client: httpx.Client) -> None:
    body = client.post("/v1/classify", json={"image": B64, "budget_ms": -3, "top_k": 99}).json()
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"budget_ms", "top_k"}
    assert "budget_ms" in body["detail"] and "-3" not in json.dumps(body["errors"])  # inputs are not echoed


def test_declared_length_over_limit_is_refused_before_reading(client: httpx.Client) -> None:
    # a raw socket: announce 1 GB, send 1 kB; the server answers from the header alone
    host, port = str(client.base_url.host), int(client.base_url.port)
    head = f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {10**9}\r\n\r\n"
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.encode() + b"x" * 1024)
        status, body = read_response(sock)
    assert status == 413 and body["error"] == "body_too_large", body


def test_a_raw_request_over_budget_is_refused_before_its_body_is_read(client: httpx.Client) -> None:
    # announce 200 kB (within the limit) and send none of it: the query alone decides
    host, port = str(client.base_url.host), int(client.base_url.port)
    head = (
        "POST /v1/classify/raw?budget_ms=0.001 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        "Content-Length: 200000\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.encode())
        status, body = read_response(sock)
    assert status == 422 and body["error"] == "budget_too_small", body


def test_unknown_routes_and_methods_answer_json(client: httpx.Client) -> None:
    assert client.get("/v1/classify").status_code == 405
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_server_stays_healthy(server: ServerProcess, client: httpx.Client) -> None:
    for request, _, _ in CASES.values():  # everything again, then normal service
        client.post("/v1/classify", **request)
    for query, request, _, _ in RAW_CASES.values():
        client.post("/v1/classify/raw" + query, **request)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    ok = client.post("/v1/classify", files={"image": ("a.jpg", JPEG, "image/jpeg")}, data={"budget_ms": "10000"})
    assert ok.status_code == 200 and ok.json()["budget_met"] is True
    metrics = client.get("/metrics").text
    assert 'elastic_requests_total{exit="none",outcome="error"}' in metrics
    log = server.log()
    assert "Traceback" not in log and '" 500' not in log, log[-3000:]
