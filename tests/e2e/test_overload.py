"""Overload on the real server, bounded and on loopback: a small queue (4) and batch (2) so that
saturation comes quickly. First the saturation rate is measured (as many clients as the server
holds), then many times that many clients send at once, each resending as soon as it has an answer.
Checks: the server held far more requests than it can serve at once, /healthz keeps answering, excess
requests get 503 + Retry-After, accepted requests keep their budgets (or were answered from exit 0,
the floor), fresh requests are still served in time, memory stays bounded, and the server recovers
when load stops."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from e2e_server import ServerProcess, serve
from PIL import Image
from reliability_helpers import encode, exchange, metric, multipart_request, rss_bytes

QUEUE_LIMIT, MAX_BATCH = 4, 2
SATURATION_CLIENTS = QUEUE_LIMIT + MAX_BATCH  # what the server can hold at once
OVERLOAD_CLIENTS = 128
MEASURE_S, OVERLOAD_S = 2.0, 3.0
# The overload, measured where it is: requests in the server (elastic_requests_in_flight, sampled every 50 ms)
# over what it can serve at once, the median of the samples. Not the closed loop's rate of answers and
# refusals over the saturation rate, which measures the server rather than the load: it fell from 3× to
# 1.4-2.1× as the server got better at answering during the flood (docs/performance.md, "A flood of retries").
MIN_HELD_FACTOR = 2.0
RSS_GROWTH_LIMIT = 150 * 1024**2
# answered requests in budget or from exit 0 (the floor). Not 100 %: the flood of refusals shares the
# server's CPU and GIL with the inference thread, which the latency profile learns only as it goes
MIN_KEPT = 0.9
# answers in budget per second under the flood, as a share of the saturation rate: a server busy refusing
# stale requests must still serve fresh ones (service.http.reading_gate). Measured 0.6-0.7 on 2 cores;
# in arrival order it was 0.001 (2-5 answers in 3 s)
MIN_GOODPUT_SHARE = 0.25
PNG = encode(Image.new("RGB", (64, 48), (120, 30, 200)), "PNG")


@dataclass
class Result:
    status: int
    body: dict
    retry_after: str | None


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"ELASTIC_QUEUE_LIMIT": str(QUEUE_LIMIT), "ELASTIC_MAX_BATCH_SIZE": str(MAX_BATCH),
           "ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "10"}  # fmt: skip
    with serve(env=env) as running:
        yield running


async def load(url: str, clients: int, seconds: float, budget_ms: float) -> tuple[list[Result], float]:
    """`clients` concurrent keep-alive connections, each sending its next request as soon as it has an
    answer. Raw asyncio streams and one prebuilt request: a few µs per request on the client side, so
    the offered rate is set by the server, not by this test's share of the CPU."""
    results: list[Result] = []
    request = multipart_request("/v1/classify", PNG, {"budget_ms": str(budget_ms)})
    host, port = url.removeprefix("http://").split(":")
    end = time.monotonic() + seconds

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < end:
                status, headers, body = await asyncio.wait_for(exchange(reader, writer, request), 60)
                results.append(Result(status, json.loads(body), headers.get("retry-after")))
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return results, time.monotonic() - started


async def watch_health(url: str, stop: asyncio.Event) -> tuple[list[float], list[float]]:
    """/healthz every 50 ms on its own connection, then /metrics: the seconds each /healthz took (it must be
    200) and the requests in flight at each sample."""
    times, held = [], []
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get("/healthz")
            assert response.status_code == 200, response.text
            times.append(time.monotonic() - started)
            held.append(metric((await client.get("/metrics")).text, "elastic_requests_in_flight"))
            await asyncio.sleep(0.05)
    return times, held


async def overload(
    url: str, budget_ms: float, clients: int = OVERLOAD_CLIENTS
) -> tuple[list[Result], float, list[float], list[float]]:
    stop = asyncio.Event()
    watch = asyncio.create_task(watch_health(url, stop))
    try:
        results, elapsed = await load(url, clients, OVERLOAD_S, budget_ms)
    finally:
        stop.set()
    health, held = await watch
    return results, elapsed, health, held


def kept_budget(result: Result) -> bool:
    return result.body["budget_met"] or result.body["exit"] == 0  # exit 0 is the floor: always answered


def test_overload_sheds_with_503_and_recovers(server: ServerProcess) -> None:
    model = httpx.get(server.url + "/v1/model", timeout=30).json()
    full_path_ms = model["exits"][-1]["cumulative_p95_ms_batch1"]
    budget_ms = round(3 * full_path_ms + 10, 2)  # room for the deepest exit when not overloaded

    saturated, elapsed = asyncio.run(load(server.url, SATURATION_CLIENTS, MEASURE_S, budget_ms))
    saturation_rate = sum(r.status == 200 for r in saturated) / elapsed
    assert saturation_rate > 0

    pid = server.process.pid
    rss_before, peak_before = rss_bytes(pid), rss_bytes(pid, peak=True)
    results, elapsed, health, held = asyncio.run(overload(server.url, budget_ms))
    rss_after, peak_after = rss_bytes(pid), rss_bytes(pid, peak=True)

    offered_rate = len(results) / elapsed
    accepted = [r for r in results if r.status == 200]
    shed = [r for r in results if r.status == 503]
    kept = sum(kept_budget(r) for r in accepted) / max(1, len(accepted))
    met = sum(r.body["budget_met"] for r in accepted) / max(1, len(accepted))
    goodput = sum(r.body["budget_met"] for r in accepted) / elapsed
    held_median = statistics.median(held) if held else 0.0
    summary = (
        f"saturation {saturation_rate:.0f}/s, offered {offered_rate:.0f}/s ({offered_rate / saturation_rate:.1f}×), "
        f"{held_median:.0f} requests in the server (median); "
        f"{len(accepted)} answered ({met:.0%} in budget, {kept:.0%} in budget or at exit 0, {goodput:.0f}/s in time), "
        f"{len(shed)} shed; "
        f"/healthz max {max(health) * 1e3:.0f} ms over {len(health)}; "
        f"RSS {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB, peak +{(peak_after - peak_before) / 2**20:.0f}"
    )
    summary += f"; shed as {dict(Counter(r.body.get('error') for r in shed))}"
    print(summary)
    assert held_median >= MIN_HELD_FACTOR * SATURATION_CLIENTS, summary
    assert len(shed) >= len(accepted), summary  # overloaded, and handled by refusing rather than queueing
    assert {r.status for r in results} <= {200, 503}, [r.body for r in results if r.status not in (200, 503)]
    assert shed and accepted, summary
    assert all(r.body["error"] in ("queue_full", "overloaded") and int(r.retry_after or 0) >= 1 for r in shed)
    assert kept >= MIN_KEPT, [r.body for r in accepted if not kept_budget(r)][:3]
    assert goodput >= MIN_GOODPUT_SHARE * saturation_rate, summary
    assert health and max(health) < 2.0, summary  # liveness never waits behind the model
    assert rss_after - rss_before < RSS_GROWTH_LIMIT and peak_after - peak_before < RSS_GROWTH_LIMIT, summary

    # recovery: the queue empties, then requests are answered one after another as before
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        deadline = time.monotonic() + 10
        while metric(client.get("/metrics").text, "elastic_queue_depth") > 0:
            assert time.monotonic() < deadline, "the queue did not empty after the load stopped"
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 200
        after = [
            client.post("/v1/classify", files={"image": ("a.png", PNG, "image/png")}, data={"budget_ms": budget_ms})
            for _ in range(10)
        ]
        assert all(r.status_code == 200 for r in after), [r.text for r in after]
        assert all(kept_budget(Result(200, r.json(), None)) for r in after)
        rejected = metric(client.get("/metrics").text, 'elastic_requests_total{exit="none",outcome="rejected"}')
        assert rejected >= len(shed)
