"""Hot reload on the real server: `POST /v1/admin/reload` swaps in another checkpoint while requests
keep coming, refuses broken or incompatible ones with the reason while the old model keeps serving,
and needs the admin token. (Without a token the route does not exist: tests/service/http/test_admin.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from e2e_server import ServerProcess, serve
from PIL import Image
from reliability_helpers import encode, tiny_checkpoint

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.models.registry import create_model

TOKEN = "reload-test-token-0123"
SHIPPED = json.loads((default_checkpoint() / "elastic.json").read_text())
SHIPPED_EXITS = len(SHIPPED["exits"])
TINY_CLASSES = ["red", "green", "blue"]
PNG = encode(Image.new("RGB", (40, 30), (200, 40, 40)), "PNG")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"ELASTIC_ADMIN_TOKEN": TOKEN, "ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "5"}
    with serve(env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def reload(client: httpx.Client, checkpoint: Path | str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/v1/admin/reload", json={"checkpoint": str(checkpoint)}, headers=headers)


def classify(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/classify", files={"image": ("a.png", PNG, "image/png")}, data={"top_k": "3"})


def assert_shipped_model_serves(client: httpx.Client) -> None:
    model = client.get("/v1/model").json()
    assert model["name"] == SHIPPED["arch"]["name"] and model["classes"] == SHIPPED["classes"]
    answer = classify(client)
    assert answer.status_code == 200 and answer.json()["num_exits"] == SHIPPED_EXITS
    assert answer.json()["label"] in SHIPPED["classes"]


def test_token_is_required(client: httpx.Client, tmp_path: Path) -> None:
    tiny = tiny_checkpoint(tmp_path / "tiny", TINY_CLASSES)
    missing = reload(client, tiny, token=None)
    assert missing.status_code == 401 and missing.json()["error"] == "missing_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = reload(client, tiny, token=TOKEN[:-1] + "x")
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_token"
    basic = client.post("/v1/admin/reload", json={"checkpoint": str(tiny)}, auth=("admin", TOKEN))
    assert basic.status_code == 401
    # the token is checked before the body is even parsed
    garbage = client.post("/v1/admin/reload", content=b"{not json", headers={"content-type": "application/json"})
    assert garbage.status_code == 401
    assert_shipped_model_serves(client)


def test_reload_swaps_the_model_while_serving(client: httpx.Client, server: ServerProcess, tmp_path: Path) -> None:
    tiny = tiny_checkpoint(tmp_path / "tiny", TINY_CLASSES)
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def keep_classifying() -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as own:
            while not stop.is_set():
                answers.append(classify(own))

    worker = threading.Thread(target=keep_classifying)
    worker.start()
    try:
        time.sleep(0.5)
        response = reload(client, tiny)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny" and body["num_exits"] == 3 and body["classes"] == TINY_CLASSES
    assert body["checkpoint"] == str(tiny.resolve()) and body["previous_checkpoint"] == str(default_checkpoint())

    # every request during the swap was answered, each wholly by one model or the other
    assert answers and all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    kinds = set()
    for answer in answers:
        a = answer.json()
        old = a["num_exits"] == SHIPPED_EXITS and a["label"] in SHIPPED["classes"]
        new = a["num_exits"] == 3 and a["label"] in TINY_CLASSES
        assert old or new, a
        assert all(t["label"] in (SHIPPED["classes"] if old else TINY_CLASSES) for t in a["top_k"]), a
        kinds.add("old" if old else "new")
    assert kinds == {"old", "new"}

    model = client.get("/v1/model").json()
    assert model["name"] == "tiny" and model["classes"] == TINY_CLASSES and model["checkpoint"] == str(tiny.resolve())
    assert all(e["latency"] for e in model["exits"])  # calibrated before the swap
    answer = classify(client).json()
    assert answer["num_exits"] == 3 and answer["label"] in TINY_CLASSES
    schema = client.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert schema["application/json"]["schema"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 3
    info = [line for line in client.get("/metrics").text.splitlines() if line.startswith("elastic_model_info{")]
    assert len(info) == 1 and 'model="tiny"' in info[0]

    back = reload(client, default_checkpoint())
    assert back.status_code == 200, back.text
    assert_shipped_model_serves(client)


def _nan_checkpoint(directory: Path) -> Path:
    model = create_model("tiny", num_classes=3, head="conv").eval()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    meta = build_metadata(model, "tiny", {"num_classes": 3, "head": "conv"}, TINY_CLASSES, (3, 32, 32),
                          SHIPPED["mean"], SHIPPED["std"])  # fmt: skip
    return save_checkpoint(directory, model, meta)


def _edit_meta(directory: Path, **changes: object) -> Path:
    path = directory / "elastic.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return directory


def _pickled_weights(directory: Path) -> Path:
    """The weights file replaced by a torch.save (pickle) archive, with the metadata's hash updated to match."""
    weights = directory / "model.safetensors"
    torch.save({"weight": torch.zeros(3)}, weights)
    return _edit_meta(directory, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())


def _garble_meta(directory: Path) -> Path:
    (directory / "elastic.json").write_text("{")
    return directory


def _flip_byte(directory: Path) -> Path:
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return directory


BROKEN = {
    # name → (make it from a valid tiny checkpoint dir, expected code, words in the reason)
    "missing-directory": (lambda d: d / "does-not-exist", "invalid_checkpoint", "not found"),
    "corrupt-weights": (_flip_byte, "invalid_checkpoint", "SHA-256"),
    "non-finite-weights": (lambda d: _nan_checkpoint(d.parent / "nan"), "invalid_checkpoint", "non-finite"),
    "classes-vs-head": (lambda d: _edit_meta(d, classes=["a", "b", "c", "d", "e"]), "invalid_checkpoint", "outputs"),
    "metadata-not-json": (_garble_meta, "invalid_checkpoint", "JSON"),
    "pickle-weights": (_pickled_weights, "invalid_checkpoint", "safetensors"),
    "other-input-size": (
        lambda d: tiny_checkpoint(d.parent / "big", TINY_CLASSES, input_size=(3, 64, 64)),
        "incompatible_checkpoint",
        "input_size",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_checkpoint_is_refused_and_the_old_model_keeps_serving(
    client: httpx.Client, tmp_path: Path, name: str
) -> None:
    make, code, words = BROKEN[name]
    good = tiny_checkpoint(tmp_path / "tiny", TINY_CLASSES)
    work = tmp_path / "work"
    shutil.copytree(good, work)
    response = reload(client, make(work))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code and words in response.json()["detail"], response.json()
    assert_shipped_model_serves(client)
