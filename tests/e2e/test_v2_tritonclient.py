"""The Open Inference Protocol proven with a client nobody here wrote: Triton's `tritonclient[http]`
against the real server (uvicorn subprocess, shipped checkpoint). Batches of real PNG and JPEG bytes in
binary and in JSON (base64), preprocessed FP32 pixels, the budget in the request's parameters, outputs
as asked; the answers are /v1's answers for the same images."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

MODEL = "resnet9-cifar10"


def image(fmt: str, seed: int, size: tuple[int, int] = (32, 32)) -> bytes:
    """A smooth random picture (blocks of colour, as photographs have), encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small, "RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, fmt)
    return buffer.getvalue()


IMAGES = [image("PNG", 1), image("JPEG", 2), image("PNG", 3, (64, 48)), image("JPEG", 4, (40, 40))]


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server_url.removeprefix("http://"), network_timeout=60.0)
    yield client
    client.close()


def bytes_input(images: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    # JSON mode carries UTF-8 strings only: images travel base64-encoded there
    values = images if binary else [base64.b64encode(i) for i in images]
    return tensor.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=binary)


def v1_answer(server_url: str, data: bytes) -> dict:
    response = httpx.post(server_url + "/v1/classify", files={"image": ("i", data)}, data={"top_k": "10"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "elastic" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(MODEL)
    version = meta["versions"][0]
    assert client.get_model_metadata(MODEL, version) == meta
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, version)
    assert not client.is_model_ready("no-such-model")
    assert {i["name"] for i in meta["inputs"]} == {"image", "pixels"}
    assert len(meta["exits"]) == 5 and meta["classes"][3] == "cat"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_batch_of_images_gets_v1s_answers(
    client: triton.InferenceServerClient, server_url: str, binary: bool
) -> None:
    result = client.infer(MODEL, [bytes_input(IMAGES, binary)], request_id="batch-1")
    response = result.get_response()
    assert response["model_name"] == MODEL and response["id"] == "batch-1"
    assert response["parameters"]["images"] == len(IMAGES)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(IMAGES), 10) and probabilities.dtype == np.float32
    assert result.as_numpy("exit").dtype == np.int32 and result.as_numpy("budget_met").dtype == np.bool_
    labels = [label.decode() for label in result.as_numpy("label")]
    for k, data in enumerate(IMAGES):  # no budget: the final exit, as /v1 answers it
        expected = v1_answer(server_url, data)
        assert labels[k] == expected["label"] and result.as_numpy("exit")[k] == expected["exit"] == 4
        dense = np.zeros(10, np.float32)
        for entry in expected["top_k"]:
            dense[entry["class_id"]] = entry["confidence"]
        np.testing.assert_allclose(probabilities[k], dense, atol=1e-5)
    assert result.as_numpy("budget_met").all()


def test_the_budget_travels_in_the_parameters(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("exit", binary_data=True),
               triton.InferRequestedOutput("mflops", binary_data=False),
               triton.InferRequestedOutput("stopped_by", binary_data=True)]  # fmt: skip
    result = client.infer(MODEL, [bytes_input(IMAGES, False)], outputs=outputs, parameters={"budget_mflops": 100.0})
    assert [o["name"] for o in result.get_response()["outputs"]] == ["exit", "mflops", "stopped_by"]
    assert result.as_numpy("probabilities") is None  # not asked for
    assert (result.as_numpy("exit") == 1).all()  # exit 1 is the deepest under 100 MFLOPs
    assert (result.as_numpy("mflops") <= 100.0).all()
    assert result.get_response()["parameters"]["budget_mflops"] == 100.0
    confident = client.infer(MODEL, [bytes_input(IMAGES, True)], parameters={"min_confidence": 0.01})
    assert (confident.as_numpy("exit") == 0).all()
    assert {s.decode() for s in confident.as_numpy("stopped_by")} == {"confident"}
    timed = client.infer(MODEL, [bytes_input(IMAGES, True)], parameters={"budget_ms": 5000})
    parameters = timed.get_response()["parameters"]
    assert parameters["budget_ms"] == 5000 and parameters["budget_met"] is True
    latencies = timed.as_numpy("latency_ms")
    assert (latencies > 0).all() and (latencies <= parameters["latency_ms"] + 1e-3).all()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_pixels_give_the_images_answer(client: triton.InferenceServerClient, binary: bool) -> None:
    meta = client.get_model_metadata(MODEL)["preprocessing"]
    mean, std = (np.array(meta[key], np.float32).reshape(3, 1, 1) for key in ("mean", "std"))
    images = IMAGES[:2]  # 32 x 32: the model's size, so preprocessing is the scaling and normalisation alone
    pixels = np.stack([
        (np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 - mean) / std
        for data in images
    ]).astype(np.float32)  # fmt: skip
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32").set_data_from_numpy(pixels, binary_data=binary)
    from_pixels = client.infer(MODEL, [tensor]).as_numpy("probabilities")
    from_bytes = client.infer(MODEL, [bytes_input(images, True)]).as_numpy("probabilities")
    np.testing.assert_allclose(from_pixels, from_bytes, atol=1e-4)


def test_errors_reach_the_client_with_status_and_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", [bytes_input(IMAGES[:1], True)])
    assert caught.value.status() == "404" and MODEL in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [bytes_input([b"not an image"], True)])
    assert caught.value.status() == "400" and "not_an_image" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [bytes_input(IMAGES[:1], True)], parameters={"budget_ms": -5})
    assert caught.value.status() == "400" and "budget_ms" in caught.value.message()
    assert client.is_server_ready()


def test_images_count_in_the_metrics(client: triton.InferenceServerClient, server_url: str) -> None:
    def answered() -> float:
        text = httpx.get(server_url + "/metrics", timeout=10).text
        answers = [
            line for line in text.splitlines() if line.startswith("elastic_requests_total{") and "none" not in line
        ]
        return sum(float(line.rsplit(" ", 1)[1]) for line in answers)

    before = answered()
    client.infer(MODEL, [bytes_input(IMAGES, True)])
    assert answered() == before + len(IMAGES)
