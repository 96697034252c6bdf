"""POST /v1/classify/stream against the real server (uvicorn subprocess), read with a real SSE client
(httpx-sse), in both engines: every exit's event in order then the final answer, a budget that stops it,
a confidence target, /v1's errors before the stream opens, and on a slow checkpoint (time to act between
two exits): a client that leaves mid-stream stops its work, a dying inference process ends the stream with an
error event, an open stream counts against the in-flight limit."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from e2e_server import ServerProcess, inference_child, serve
from httpx_sse import ServerSentEvent, connect_sse
from image_builders import png_claiming
from PIL import Image

from elastic_anytime.models.checkpoint import build_metadata, save_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.models.registry import create_model

ENGINES = ["process", "thread"]
STREAM = "/v1/classify/stream"


def picture(fmt: str, seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A smooth random picture (blocks of colour, as photographs have), encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small, "RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, fmt)
    return buffer.getvalue()


PNG = picture("PNG", 1)
JPEG = picture("JPEG", 2)


@pytest.fixture(scope="module", params=ENGINES)
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with serve(env={"ELASTIC_ENGINE": request.param}) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        for _ in range(5):  # the front end's costs are measured from the first requests on
            assert c.post("/v1/classify", files={"image": ("i", PNG, "image/png")}).status_code == 200
        yield c


def stream(client: httpx.Client, data: bytes = PNG, **fields: object) -> list[ServerSentEvent]:
    """Every event of one streamed request (multipart), checking the response is an open event stream."""
    form = {k: str(v) for k, v in fields.items()}
    with connect_sse(client, "POST", STREAM, files={"image": ("img", data, "image/png")}, data=form) as source:
        response = source.response
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return list(source.iter_sse())


def check_events(events: list[ServerSentEvent]) -> tuple[list[dict], dict]:
    """The exit events and the final one, checked for the contract's shape and order."""
    *exits, final = events
    assert [e.event for e in exits] == ["exit"] * len(exits) and final.event == "final", [e.event for e in events]
    parsed = [json.loads(e.data) for e in exits]
    answer = json.loads(final.data)
    assert [int(e.id) for e in exits] == [p["exit"] for p in parsed] == list(range(len(exits)))
    assert int(final.id) == answer["exit"] == len(exits) and answer["final"] is True
    for p in parsed:
        assert p["final"] is False and p["num_exits"] == answer["num_exits"]
        assert set(p) >= {"exit", "exit_name", "label", "class_id", "confidence", "latency_ms", "mflops"}
    latencies = [p["latency_ms"] for p in parsed] + [answer["latency_ms"]]
    spent = [p["mflops"] for p in parsed] + [answer["mflops"]]
    assert latencies == sorted(latencies) and spent == sorted(spent) and len(set(spent)) == len(spent)
    return parsed, answer


def test_without_a_budget_every_exit_then_the_final_one(client: httpx.Client) -> None:
    events = stream(client, top_k=3)
    exits, final = check_events(events)
    num_exits = final["num_exits"]
    assert len(exits) == num_exits - 1 and final["stopped_by"] == "final"
    assert all(len(e["top_k"]) == 3 and e["top_k"][0]["class_id"] == e["class_id"] for e in exits)
    # the final event is /v1's answer for the same image (it paid for the heads on the way, too)
    v1 = client.post("/v1/classify", files={"image": ("i", PNG, "image/png")}, data={"top_k": "3"}).json()
    assert set(final) == set(v1) | {"final"}
    assert (final["label"], final["class_id"], final["exit"]) == (v1["label"], v1["class_id"], v1["exit"])
    assert final["confidence"] == pytest.approx(v1["confidence"], abs=1e-4)
    assert final["mflops"] > v1["mflops"] and final["budget_ms"] is None and final["budget_met"] is True


def test_a_json_body_streams_too(client: httpx.Client) -> None:
    body = {"image": base64.b64encode(JPEG).decode(), "top_k": 2}
    with connect_sse(client, "POST", STREAM, json=body) as source:
        exits, final = check_events(list(source.iter_sse()))
    assert len(exits) == final["num_exits"] - 1 and len(final["top_k"]) == 2


def test_a_budget_closes_the_stream_at_its_deadline(client: httpx.Client) -> None:
    # a budget halfway between this server's first exit and its last, as streamed here just now
    unhurried = [check_events(stream(client)) for _ in range(3)]
    first = statistics.median(exits[0]["latency_ms"] for exits, _ in unhurried)
    last = statistics.median(final["latency_ms"] for _, final in unhurried)
    budget_ms = round((first + last) / 2, 3)
    stopped_early, met = [], []
    for _ in range(3):  # a loaded machine may stall one; each answer stays truthful
        exits, final = check_events(stream(client, budget_ms=budget_ms))
        assert final["budget_ms"] == budget_ms and final["stopped_by"] in ("deadline", "final"), final
        assert (final["stopped_by"] == "final") == (final["exit"] == final["num_exits"] - 1), final
        assert final["budget_met"] == (final["latency_ms"] <= budget_ms), final
        assert all(e["latency_ms"] <= final["latency_ms"] for e in exits)
        stopped_early.append(final["stopped_by"] == "deadline")
        met.append(final["budget_met"])
    assert any(stopped_early), f"{budget_ms} ms (first exit {first} ms, last {last} ms) never stopped a stream early"
    assert any(met), f"no stream of 3 closed within {budget_ms} ms"


def test_a_confidence_target_ends_the_stream_where_it_is_reached(client: httpx.Client) -> None:
    exits, final = check_events(stream(client))
    confidences = [e["confidence"] for e in exits] + [final["confidence"]]
    target = max(confidences)
    reached = confidences.index(target)  # the first exit that reaches it
    exits, final = check_events(stream(client, min_confidence=round(target - 1e-6, 7)))
    assert final["exit"] == reached and len(exits) == reached
    assert final["stopped_by"] == ("final" if reached == final["num_exits"] - 1 else "confident")


BAD_INPUTS = {
    "not-an-image": {"files": {"image": ("i", b"definitely not an image", "image/png")}},
    "too-many-pixels": {"files": {"image": ("i", png_claiming(20_000, 20_000), "image/png")}},
    "negative-budget": {"files": {"image": ("i", PNG, "image/png")}, "data": {"budget_ms": "-1"}},
    "unknown-field": {"files": {"image": ("i", PNG, "image/png")}, "data": {"colour": "red"}},
    "no-image": {"data": {"budget_ms": "5"}, "files": {"other": ("o", b"x", "text/plain")}},
    "text-body": {"content": b"hello", "headers": {"content-type": "text/plain"}},
    "malformed-json": {"content": b"{nope", "headers": {"content-type": "application/json"}},
    "bad-base64": {"json": {"image": "not base64!"}},
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_v1s_error_before_any_stream(client: httpx.Client, name: str) -> None:
    streamed = client.post(STREAM, **BAD_INPUTS[name])
    v1 = client.post("/v1/classify", **BAD_INPUTS[name])
    assert 400 <= v1.status_code < 500, v1.text
    assert streamed.status_code == v1.status_code and streamed.json() == v1.json()
    assert streamed.headers["content-type"] == "application/json"


def test_a_budget_too_small_is_refused_before_any_stream(client: httpx.Client) -> None:
    fields = {"files": {"image": ("i", PNG, "image/png")}, "data": {"budget_ms": "0.01"}}
    streamed, v1 = client.post(STREAM, **fields), client.post("/v1/classify", **fields)
    assert streamed.status_code == v1.status_code == 422
    assert streamed.json()["error"] == v1.json()["error"] == "budget_too_small"
    assert streamed.json()["detail"].startswith("budget_ms=0.01 cannot be met on this server")


def test_streams_are_counted_as_answers(client: httpx.Client) -> None:
    def answered() -> float:
        text = client.get("/metrics").text
        return sum(
            float(v) for v in re.findall(r'^elastic_requests_total\{exit="\d+",outcome="\w+"\} (\S+)$', text, re.M)
        )

    before = answered()
    stream(client)
    assert answered() == before + 1


def metric(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found, f"{series} not in /metrics"
    return float(found.group(1))


def slow_checkpoint(directory: Path) -> Path:
    """resnet9 (random weights) on 320 px inputs: here about 115 ms to exit 0, then 35-50 ms a stage (4 more):
    time for a client to leave, or another request to come, between two exits even on a busy machine."""
    shipped = json.loads((default_checkpoint() / "elastic.json").read_text())
    torch.manual_seed(0)
    args = {"num_classes": 3, "head": "conv", "width": 32}
    model = create_model("resnet9", **args).eval()
    meta = build_metadata(model, "resnet9", args, ["a", "b", "c"], (3, 320, 320), shipped["mean"], shipped["std"])
    return save_checkpoint(directory, model, meta)


@pytest.fixture(scope="module", params=ENGINES)
def slow_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    checkpoint = slow_checkpoint(tmp_path_factory.mktemp("slow") / "resnet9-320")
    env = {"ELASTIC_ENGINE": request.param, "ELASTIC_MAX_BATCH_SIZE": "1", "ELASTIC_WARMUP_RUNS": "1",
           "ELASTIC_CALIBRATION_RUNS": "2", "ELASTIC_IDLE_REFRESH_MS": "0",
           "ELASTIC_MAX_IN_FLIGHT": "1"}  # fmt: skip
    with serve(Path(checkpoint), env=env) as server:
        yield server


def test_a_client_that_leaves_mid_stream_stops_its_work(slow_server: ServerProcess) -> None:
    url = slow_server.url
    with httpx.Client(base_url=url, timeout=60) as observer:
        before = observer.get("/metrics").text
        num_exits = observer.get("/v1/model").json()["num_exits"]
        last_stage = f'elastic_stage_latency_seconds_count{{stage="{num_exits - 1}"}}'
        with httpx.Client(base_url=url, timeout=60) as leaving:  # its own connection, closed on leaving
            files = {"image": ("i", PNG, "image/png")}
            with connect_sse(leaving, "POST", STREAM, files=files) as source:
                first = next(source.iter_sse())
        assert first.event == "exit" and first.id == "0"
        deadline, after = time.monotonic() + 20, before
        while time.monotonic() < deadline:
            after = observer.get("/metrics").text
            if metric(after, "elastic_cancelled_total") > metric(before, "elastic_cancelled_total"):
                break
            time.sleep(0.05)
        assert metric(after, "elastic_cancelled_total") == metric(before, "elastic_cancelled_total") + 1
        time.sleep(0.5)  # the batch it left would have reached its last stage by now
        after = observer.get("/metrics").text
        assert metric(after, last_stage) == metric(before, last_stage), "its work went on to the last stage"
        assert metric(after, "elastic_requests_in_flight") == 0
        # and the server serves on, streams included
        events = stream(observer)
        assert events[-1].event == "final" and len(events) == num_exits


@pytest.mark.parametrize("slow_server", ["process"], indirect=True)  # the thread engine has no such process
def test_a_stream_whose_inference_process_dies_ends_with_an_error_event(slow_server: ServerProcess) -> None:
    child = inference_child(slow_server.process.pid)
    with httpx.Client(base_url=slow_server.url, timeout=60) as client:
        files = {"image": ("i", PNG, "image/png")}
        with connect_sse(client, "POST", STREAM, files=files) as source:
            events = source.iter_sse()
            assert next(events).event == "exit"
            os.kill(child, signal.SIGKILL)  # between exit 0 and the next one (35-50 ms a stage here)
            rest = list(events)
    assert [e.event for e in rest] == ["error"], rest
    error = json.loads(rest[0].data)
    assert error["error"] == "unavailable" and "inference process" in error["detail"], error
    deadline = time.monotonic() + 120  # its replacement gets ready for the tests after this one
    while httpx.get(slow_server.url + "/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_an_open_stream_counts_against_the_limits(slow_server: ServerProcess) -> None:
    # ELASTIC_MAX_IN_FLIGHT=1 here: while one stream is open, any other classify request is refused at once
    files = {"image": ("i", PNG, "image/png")}
    with httpx.Client(base_url=slow_server.url, timeout=60) as client, httpx.Client(base_url=slow_server.url) as other:
        with connect_sse(client, "POST", STREAM, files=files) as source:
            events = source.iter_sse()
            assert next(events).event == "exit"
            refused = [other.post(STREAM, files=files), other.post("/v1/classify", files=files)]
            rest = list(events)
        assert rest[-1].event == "final"
        for response in refused:
            assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"] == "overloaded" and "at capacity" in response.json()["detail"]
        assert refused[0].json() == refused[1].json()
        assert other.post(STREAM, files=files).status_code == 200  # the stream over, the server takes the next
