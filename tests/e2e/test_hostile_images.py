"""Hostile and odd input on the real server: every case gets a documented 4xx or a correct answer,
the server stays healthy, and its memory stays bounded. Extends test_bad_input.py (which has the
truncated-header, zero-byte, unsupported-format, 48 MP bomb and field cases) with forged headers,
files of other kinds named .png, unusual but valid images, extreme aspect ratios, EXIF rotation,
bodies over the limit that are never completed, many fields and broken base64."""

from __future__ import annotations

import base64
import io
import json
import select
import socket
import zipfile
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from e2e_server import ServerProcess, serve
from image_builders import png_claiming
from PIL import Image
from reliability_helpers import encode, read_response, rss_bytes

MAX_IMAGE_BYTES = 256 * 1024
BODY_LIMIT = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024  # Settings.max_body_bytes
RSS_GROWTH_LIMIT = 200 * 1024**2  # the hostile batches may not grow the server's memory, now or at peak, by more


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("secret.txt", "x" * 1000)
    return buffer.getvalue()


def palette_with_transparency() -> bytes:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    return encode(image, "PNG", transparency=0)


NOISE = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
LARGE_PNG = encode(Image.fromarray(NOISE, "RGB"), "PNG")

# name → (image bytes, status, error code or None)
IMAGE_CASES: dict[str, tuple[bytes, int, str | None]] = {
    "png-header-claims-100000x100000": (png_claiming(100_000, 100_000), 413, "too_many_pixels"),
    "zip-named-png": (zip_bytes(), 400, "not_an_image"),
    "html-named-png": (b"<!DOCTYPE html><html><script>alert(1)</script></html>", 400, "not_an_image"),
    "pdf-named-png": (b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n", 400, "not_an_image"),
    "png-cut-mid-data": (LARGE_PNG[: len(LARGE_PNG) // 2], 400, "bad_image"),
    "png-garbled-data": (LARGE_PNG[:60] + bytes(64) + LARGE_PNG[124:], 400, "bad_image"),
    "one-pixel": (encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), 200, None),
    "16-bit-grey": (encode(Image.fromarray(np.full((20, 30), 40000, np.uint16)), "PNG"), 200, None),
    "cmyk-jpeg": (encode(Image.new("CMYK", (40, 30), (0, 80, 160, 20)), "JPEG"), 200, None),
    "palette-transparency": (palette_with_transparency(), 200, None),
    "animated-gif": (animated("GIF"), 200, None),
    "animated-png": (animated("PNG"), 200, None),
    "animated-webp": (animated("WEBP"), 200, None),
    "200000x1": (encode(Image.new("RGB", (200_000, 1), (20, 200, 20)), "PNG"), 200, None),
    "1x200000": (encode(Image.new("L", (1, 200_000), 77), "PNG"), 200, None),
}

B64 = base64.b64encode(encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")).decode()
URL_SAFE = B64.replace("+", "-").replace("/", "_") + "-_"
UNKNOWN_KEYS = {f"k{i}": i for i in range(20_000)}  # 300 kB, under the body limit
JSON_CASES: dict[str, tuple[bytes, int, str]] = {
    "base64-missing-padding": (json.dumps({"image": B64.rstrip("=")[:-1]}).encode(), 400, "bad_base64"),
    "base64-non-ascii": (json.dumps({"image": "iVBORw0K" + "é" * 8}).encode(), 400, "bad_base64"),
    "base64-unicode-space": (json.dumps({"image": B64[:8] + "\u2003" + B64[8:]}).encode(), 400, "bad_base64"),
    "base64-url-alphabet": (json.dumps({"image": URL_SAFE}).encode(), 400, "bad_base64"),
    "data-url-bad-payload": (json.dumps({"image": "data:image/png;base64,***"}).encode(), 400, "bad_base64"),
    "json-20000-unknown-keys": (json.dumps({"image": B64, **UNKNOWN_KEYS}).encode(), 422, "invalid_field"),
    "json-nested-100000-deep": (b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "malformed_json"),
}


def many_fields(count: int) -> bytes:
    parts = "".join(f'--b\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n' for i in range(count))
    return (parts + "--b--\r\n").encode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"ELASTIC_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES), "ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "5"}
    with serve(env=env) as running:
        BASELINE.update(rss=rss_bytes(running.process.pid), peak=rss_bytes(running.process.pid, peak=True))
        yield running


BASELINE: dict[str, int] = {}  # the server's memory once ready, before any hostile input


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def post_image(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    return client.post("/v1/classify", files={"image": ("photo.png", data, "image/png")}, data=fields)


def check(response: httpx.Response, status: int, code: str | None) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    if status == 200:
        assert body["exit"] == body["num_exits"] - 1 and 0 <= body["class_id"] < 10 and body["label"]
    else:
        assert body["error"] == code and body["detail"], body


@pytest.mark.parametrize("name", list(IMAGE_CASES))
def test_hostile_or_odd_image(client: httpx.Client, name: str) -> None:
    data, status, code = IMAGE_CASES[name]
    check(post_image(client, data), status, code)


@pytest.mark.parametrize("name", list(JSON_CASES))
def test_hostile_json(client: httpx.Client, name: str) -> None:
    body, status, code = JSON_CASES[name]
    response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    check(response, status, code)
    assert len(response.content) < 4096  # 20 000 unknown keys must not be echoed back one by one
    assert len(response.json().get("errors", [])) <= 11


def test_many_multipart_fields(client: httpx.Client) -> None:
    response = client.post(
        "/v1/classify", content=many_fields(5_000), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    check(response, 400, "malformed_multipart")


def test_exif_rotation_is_applied(client: httpx.Client) -> None:
    """A JPEG stored sideways with EXIF orientation 6 is answered exactly like the upright picture,
    and not like the stored one (16-pixel flat blocks: JPEG re-encoding keeps them nearly exact)."""
    blocks = np.random.default_rng(1).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    stored = Image.fromarray(np.kron(blocks, np.ones((16, 16, 1), np.uint8)), "RGB")  # 64 × 48
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    tagged = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    upright = encode(stored.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95)
    unrotated = encode(stored, "JPEG", quality=95)

    def probs(data: bytes) -> np.ndarray:
        response = post_image(client, data, top_k="10")
        check(response, 200, None)
        out = np.zeros(10)
        for entry in response.json()["top_k"]:
            out[entry["class_id"]] = entry["confidence"]
        return out

    p_tagged, p_upright, p_unrotated = probs(tagged), probs(upright), probs(unrotated)
    same = np.abs(p_tagged - p_upright).max()
    other = np.abs(p_tagged - p_unrotated).max()
    assert same < other / 10, (same, other)


def raw_request(server: ServerProcess, head: str) -> socket.socket:
    """A connection that has sent `head` (request line + headers) and nothing else yet."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode())
    return sock


def test_declared_multipart_body_over_the_limit_is_refused_from_the_headers(server: ServerProcess) -> None:
    # the body is never sent: an answer proves the server did not wait for it
    head = (
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {50 * 1024**3}\r\n\r\n"
    )
    sock = raw_request(server, head)
    with sock:
        status, body = read_response(sock)
    assert (status, body["error"]) == (413, "body_too_large")


def test_streamed_body_over_the_limit_stops_being_read(server: ServerProcess) -> None:
    """Chunked upload without a length, never finished: the server answers 413 once the limit is
    passed, long before the client would have sent everything (64 MiB, 160× the limit)."""
    head = (
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    framed = b"%x\r\n%s\r\n" % (len(piece), piece)
    total = 64 * 1024**2
    sock = raw_request(server, head)
    sent = 0
    with sock:
        while sent < total:
            if select.select([sock], [], [], 0.01)[0]:  # the answer came: stop sending
                break
            try:
                sock.sendall(framed)
            except OSError:  # the server closed its side after answering
                break
            sent += len(piece)
        status, body = read_response(sock)
    assert (status, body["error"]) == (413, "body_too_large")
    assert sent < total, "the client sent everything before the server answered"


def test_server_stays_healthy_and_bounded(server: ServerProcess, client: httpx.Client) -> None:
    """Runs last: everything above, then the whole batch three times more; the peak (VmHWM) counts,
    so a transient allocation (an image blown up while resizing) fails it even if freed later."""
    for _ in range(3):
        for data, status, _ in IMAGE_CASES.values():
            assert post_image(client, data).status_code == status
        for body, status, _ in JSON_CASES.values():
            response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status
    pid, mib = server.process.pid, 2**20
    rss, peak = rss_bytes(pid), rss_bytes(pid, peak=True)
    print(f"server RSS {BASELINE['rss'] / mib:.0f} → {rss / mib:.0f} MiB, peak {BASELINE['peak'] / mib:.0f} → "
          f"{peak / mib:.0f} MiB")  # fmt: skip
    assert rss - BASELINE["rss"] < RSS_GROWTH_LIMIT and peak - BASELINE["peak"] < RSS_GROWTH_LIMIT
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    check(post_image(client, encode(Image.new("RGB", (64, 48), (200, 100, 0)), "JPEG")), 200, None)
    log = server.log()
    assert "Traceback" not in log and '" 500' not in log, log[-3000:]
