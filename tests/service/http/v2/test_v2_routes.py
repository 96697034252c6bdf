"""The Open Inference Protocol's routes in-process (the real app and shipped model through Starlette's
TestClient): metadata, readiness, and every refusal with the protocol's status code and an
`{"error": ...}` that says what was wrong; never a 500. The real client against a real server:
tests/e2e/test_v2_tritonclient.py."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from elastic_anytime.service.http.main import create_app
from elastic_anytime.service.settings import Settings

FAST = {"warmup_runs": 1, "calibration_runs": 2, "torch_threads": 1, "max_batch_size": 2, "engine": "thread"}
MAX_IMAGES = 3
MODEL = "resnet9-cifar10"
INFER = f"/v2/models/{MODEL}/infer"


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, "PNG")
    return buffer.getvalue()


def images_json(images: list[bytes], **parameters: object) -> dict:
    data = [base64.b64encode(i).decode() for i in images]
    body: dict = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": data}]}
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings.from_env({}, max_images_per_request=MAX_IMAGES, **FAST)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        yield client


def version(client: TestClient) -> str:
    return client.get(f"/v2/models/{MODEL}").json()["versions"][0]


def test_server_and_model_metadata(client: TestClient) -> None:
    server = client.get("/v2").json()
    assert server["name"] == "elastic" and "binary_tensor_data" in server["extensions"]
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL
    assert meta["versions"] == ["3111f3a0205e"]  # the shipped weights' SHA-256, shortened
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {
        "image": ("BYTES", [-1]), "pixels": ("FP32", [-1, 3, 32, 32]),
    }  # fmt: skip
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert outputs["probabilities"] == ("FP32", [-1, 10]) and outputs["budget_met"] == ("BOOL", [-1])
    assert [e["index"] for e in meta["exits"]] == [0, 1, 2, 3, 4] and meta["exits"][0]["mflops"] > 0
    assert client.get(f"/v2/models/{MODEL}/versions/{meta['versions'][0]}").json() == meta
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert client.get(f"/v2/models/{MODEL}/versions/{meta['versions'][0]}/ready").status_code == 200
    assert client.get("/v2/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200


def test_unknown_model_or_version_is_404_saying_what_is_served(client: TestClient) -> None:
    for path in ("/v2/models/nope", "/v2/models/nope/ready", f"/v2/models/{MODEL}/versions/0000/ready"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert MODEL in response.json()["error"], response.json()
    response = client.post("/v2/models/nope/infer", json=images_json([png()]))
    assert response.status_code == 404 and "model_not_found" in response.json()["error"]
    response = client.post(f"/v2/models/{MODEL}/versions/0000/infer", json=images_json([png()]))
    assert response.status_code == 404 and "no version '0000'" in response.json()["error"]


def test_a_json_request_is_answered_per_image(client: TestClient) -> None:
    body = images_json([png(), png((20, 20, 220))], budget_mflops=100.0)
    body["id"] = "abc"
    response = client.post(f"/v2/models/{MODEL}/versions/{version(client)}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == MODEL and answer["id"] == "abc"
    assert answer["parameters"]["budget_mflops"] == 100.0 and answer["parameters"]["images"] == 2
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["exit"]["data"] == [1, 1]  # the deepest exit whose cost fits 100 MFLOPs
    assert all(m <= 100.0 for m in outputs["mflops"]["data"])
    assert outputs["probabilities"]["shape"] == [2, 10]
    rows = outputs["probabilities"]["data"]
    assert abs(sum(rows[:10]) - 1) < 1e-3 and abs(sum(rows[10:]) - 1) < 1e-3
    assert outputs["stopped_by"]["data"] == ["compute", "compute"]


def binary_request(images: list[bytes], header_extra: dict | None = None) -> tuple[bytes, dict[str, str]]:
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                          "parameters": {"binary_data_size": len(raw)}}], **(header_extra or {})}  # fmt: skip
    text = json.dumps(header).encode()
    return text + raw, {"Inference-Header-Content-Length": str(len(text))}


REFUSALS = {
    "empty-body": (b"", {}, 400, "empty_body"),
    "not-json": (b"{nope", {}, 400, "malformed_json"),
    "array": (b"[]", {}, 400, "must be a JSON object"),
    "no-inputs": (b"{}", {}, 400, "inputs: Field required"),
    "bad-base64": (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@@@"]}]}),
                   {}, 400, "bad_base64"),
    "not-an-image": (json.dumps(images_json([b"this is no image"])), {}, 400, "not_an_image"),
    "too-many-images": (json.dumps(images_json([png()] * (MAX_IMAGES + 1))), {}, 400, "too_many_images"),
    "wrong-dtype": (json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1], "data": [1]}]}),
                    {}, 400, "must be BYTES"),
    "wrong-shape": (json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8],
                                            "data": [0.0] * 192}]}), {}, 400, "[N, 3, 32, 32]"),
    "budget-negative": (json.dumps(images_json([png()], budget_ms=-1)), {}, 400, "budget_ms: Input should be greater"),
    "budget-string": (json.dumps(images_json([png()], budget_ms="5")), {}, 400, "should be a valid number"),
    "budget-over-cap": (json.dumps(images_json([png()], budget_ms=1e9)), {}, 400, "budget_ms must be at most"),
    "confidence-over-1": (json.dumps(images_json([png()], min_confidence=2)), {}, 400, "min_confidence"),
    "budget-too-small": (json.dumps(images_json([png()], budget_ms=0.001)), {}, 400, "budget_too_small"),
    "bad-header-length": (b"{}", {"Inference-Header-Content-Length": "77"}, 400, "outside the body"),
    "gzip": (b"{}", {"Content-Encoding": "gzip"}, 400, "unsupported_content_encoding"),
}  # fmt: skip


@pytest.mark.parametrize(("body", "headers", "status", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_requests_get_the_protocols_status_and_a_message(
    client: TestClient, body: bytes | str, headers: dict[str, str], status: int, message: str
) -> None:
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error"} and message in error["error"], error
    assert client.get("/readyz").status_code == 200  # still serving


def test_binary_and_json_give_the_same_answer(client: TestClient) -> None:
    images = [png(), png((10, 160, 10))]
    outputs = [{"name": "label", "parameters": {"binary_data": False}},
               {"name": "exit", "parameters": {"binary_data": True}}]  # fmt: skip
    body, headers = binary_request(images, {"outputs": outputs})
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    assert [o["name"] for o in header["outputs"]] == ["label", "exit"]
    assert struct.unpack("<2i", response.content[length:]) == (4, 4)  # no budget: the final exit
    plain = client.post(INFER, json=images_json(images)).json()
    labels = next(o["data"] for o in plain["outputs"] if o["name"] == "label")
    assert header["outputs"][0]["data"] == labels


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    response = client.post(INFER, content=b"{}", headers={"Content-Length": str(10**12)})
    assert response.status_code == 413 and "body_too_large" in response.json()["error"]


def test_v2_requests_count_in_the_same_metrics_as_v1(client: TestClient) -> None:
    def answered() -> float:
        text = client.get("/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("elastic_requests_total{") and 'outcome="met"' in line)  # fmt: skip

    before = answered()
    assert client.post(INFER, json=images_json([png()] * 3)).status_code == 200
    assert answered() == before + 3  # one answer per image


def test_the_queue_limit_counts_images_and_overload_is_503_with_retry_after() -> None:
    settings = Settings.from_env({}, max_images_per_request=MAX_IMAGES, queue_limit=2, **FAST)
    with TestClient(create_app(settings)) as small:
        deadline = time.monotonic() + 120
        while small.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        response = small.post(INFER, json=images_json([png()] * 3))  # one request, three images: over 2
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert response.json()["error"].startswith("queue_full:")
        assert small.post(INFER, json=images_json([png()] * 2)).status_code == 200
