"""What the Open Inference Protocol costs over /v1: one image, sequential requests on a keep-alive loopback
connection, the three ways interleaved (so that drift hits them alike): /v1/classify multipart, /v2 infer
with the binary tensor extension, /v2 infer in JSON (base64). No budget (the final exit), so the model's
work is the same; the difference is the protocol. Reports the client's round trip and the server's own
latency (first byte to response: /v1's `latency_ms`, /v2's response parameter `latency_ms`).

    elastic serve &   # then:
    python scripts/v2_overhead.py --url http://127.0.0.1:8000 --rounds 300
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import statistics
import struct
import time
from collections.abc import Callable

import httpx
import numpy as np
from PIL import Image

log = logging.getLogger("v2_overhead")


def test_image() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small, "RGB").resize((32, 32), Image.Resampling.BILINEAR).save(buffer, "JPEG")
    return buffer.getvalue()


def senders(client: httpx.Client, model: str, image: bytes) -> dict[str, Callable[[], float]]:
    """name → a function that sends one request and returns the server's latency_ms."""
    infer = f"/v2/models/{model}/infer"
    packed = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(packed)}}],
                         "outputs": [{"name": "label", "parameters": {"binary_data": False}},
                                     {"name": "exit", "parameters": {"binary_data": False}}]}).encode()  # fmt: skip
    binary_body, binary_headers = header + packed, {"Inference-Header-Content-Length": str(len(header))}
    json_body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                             "data": [base64.b64encode(image).decode()]}],
                 "outputs": [{"name": "label"}, {"name": "exit"}]}  # fmt: skip

    def v1() -> float:
        response = client.post("/v1/classify", files={"image": ("i.jpg", image, "image/jpeg")})
        response.raise_for_status()
        return response.json()["latency_ms"]

    def v2_binary() -> float:
        response = client.post(infer, content=binary_body, headers=binary_headers)
        response.raise_for_status()
        return response.json()["parameters"]["latency_ms"]

    def v2_json() -> float:
        response = client.post(infer, json=json_body)
        response.raise_for_status()
        return response.json()["parameters"]["latency_ms"]

    return {"v1 multipart": v1, "v2 binary": v2_binary, "v2 json": v2_json}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    with httpx.Client(base_url=args.url, timeout=30) as client:
        model = client.get("/v1/model").raise_for_status().json()
        name = model["checkpoint"].rstrip("/").rsplit("/", 1)[-1]  # the v2 name: the checkpoint's directory
        ways = senders(client, name, test_image())
        for send in ways.values():  # warm-up
            for _ in range(20):
                send()
        rtt: dict[str, list[float]] = {k: [] for k in ways}
        server: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(args.rounds):
            for key, send in ways.items():
                started = time.perf_counter()
                server[key].append(send())
                rtt[key].append((time.perf_counter() - started) * 1e3)
    log.info("%s, %d rounds, one %d-byte JPEG, no budget (final exit)", model["name"], args.rounds, len(test_image()))
    log.info("%-14s %12s %12s %14s %14s", "way", "rtt p50 ms", "rtt p90 ms", "server p50 ms", "server p90 ms")
    for key in ways:
        q_rtt, q_server = statistics.quantiles(rtt[key], n=10), statistics.quantiles(server[key], n=10)
        log.info("%-14s %12.3f %12.3f %14.3f %14.3f", key, statistics.median(rtt[key]), q_rtt[8],
                 statistics.median(server[key]), q_server[8])  # fmt: skip


if __name__ == "__main__":
    main()
