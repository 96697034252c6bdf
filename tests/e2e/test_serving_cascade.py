"""The real server on a network that hands a tuple between stages (models/cascade.py): the process
engine batches, stops rows at different exits and answers with the checkpoint's calibrated exits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from e2e_server import serve
from PIL import Image

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.registry import create_model

ARGS = {"num_classes": 3, "stem": [4, 8], "stages": [[8, 8, 16], [4, 8, 16], [8, 16, 16]], "depth": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    torch.manual_seed(0)
    model = create_model("multiscale_cascade", **ARGS).eval()
    meta = build_metadata(model, "multiscale_cascade", ARGS, ["ant", "bee", "cat"], (3, 32, 32), [0.5] * 3, [0.25] * 3)
    for entry, temperature in zip(meta["exits"], (1.5, 1.2, 1.0), strict=True):
        entry["temperature"] = temperature
    directory = save_checkpoint(Path(tmp_path_factory.mktemp("ckpt")) / "cascade-test", model, meta)
    with serve(directory) as process:
        yield process.url


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def classify(url: str, seed: int, **fields: object) -> httpx.Response:
    form = {k: str(v) for k, v in fields.items()}
    return httpx.post(url + "/v1/classify", files={"image": ("i.png", png(seed), "image/png")}, data=form, timeout=30)


def test_the_model_page_shows_three_exits_with_their_temperatures(server: str) -> None:
    model = httpx.get(server + "/v1/model").json()
    assert [e["index"] for e in model["exits"]] == [0, 1, 2]
    assert [e["temperature"] for e in model["exits"]] == [1.5, 1.2, 1.0]
    assert all(e["anytime_mflops"] == pytest.approx(e["mflops"]) for e in model["exits"])  # the heads are free


@pytest.mark.parametrize(("budget_mflops", "exit_index"), [(None, 2), ("exit0", 0), ("exit1", 1)])
def test_a_compute_budget_picks_the_deepest_exit_inside_it(server: str, budget_mflops: str | None, exit_index: int):
    exits = httpx.get(server + "/v1/model").json()["exits"]
    fields = {} if budget_mflops is None else {"budget_mflops": exits[int(budget_mflops[-1])]["mflops"] + 0.01}
    answer = classify(server, 0, **fields)
    assert answer.status_code == 200, answer.text
    assert answer.json()["exit"] == exit_index and answer.json()["label"] in {"ant", "bee", "cat"}


def test_concurrent_requests_with_different_budgets_share_batches_and_each_gets_its_exit(server: str) -> None:
    exits = httpx.get(server + "/v1/model").json()["exits"]
    budgets = [exits[k % 3]["mflops"] + 0.01 for k in range(12)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda k: classify(server, k, budget_mflops=budgets[k]), range(12)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    assert [a.json()["exit"] for a in answers] == [k % 3 for k in range(12)]
