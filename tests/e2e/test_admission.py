"""Admission control on the real server: a full queue answers 503 with Retry-After, an unmeetable
budget answers 422 budget_too_small, and the default budget applies."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from e2e_server import serve
from PIL import Image

DEFAULT_BUDGET_MS = 10_000
buffer = io.BytesIO()
Image.new("RGB", (48, 48), (90, 120, 30)).save(buffer, "PNG")
PNG = buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    env = {
        "ELASTIC_QUEUE_LIMIT": "1",
        "ELASTIC_MAX_BATCH_SIZE": "1",
        "ELASTIC_REJECT_UNMEETABLE": "true",
        "ELASTIC_DEFAULT_BUDGET_MS": str(DEFAULT_BUDGET_MS),
    }
    with serve(env=env) as server, httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def post(client: httpx.Client, **fields: str) -> httpx.Response:
    return client.post("/v1/classify", files={"image": ("a.png", PNG, "image/png")}, data=fields)


def test_default_budget_applies(client: httpx.Client) -> None:
    body = post(client).json()
    assert body["budget_ms"] == DEFAULT_BUDGET_MS and body["budget_met"] is True
    assert body["exit"] == body["num_exits"] - 1


def test_a_budget_below_exit_0_is_refused_with_422(client: httpx.Client) -> None:
    response = post(client, budget_ms="0.001")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "budget_too_small" and "an idle server typically needs" in body["detail"]


def test_full_queue_rejects_with_503_and_retry_after(client: httpx.Client) -> None:
    # one request may wait; a burst of 24 at once must overflow (a few bursts in case the machine is idle-fast)
    for _ in range(5):
        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(lambda _: post(client), range(24)))
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503}, [r.text for r in responses if r.status_code not in (200, 503)]
        rejected = [r for r in responses if r.status_code == 503]
        if rejected:
            break
    else:
        pytest.fail("a queue limit of 1 never rejected a burst of 24 requests")
    assert all(r.json()["error"] == "queue_full" and int(r.headers["retry-after"]) >= 1 for r in rejected)
    assert any(r.status_code == 200 for r in responses)
    metrics = client.get("/metrics").text
    found = re.search(r'^elastic_requests_total\{exit="none",outcome="rejected"\} (\S+)', metrics, re.M)
    assert found and float(found.group(1)) >= len(rejected)
