"""Async HTTP load generator: closed loop (fixed concurrency) or open loop (Poisson arrivals).

Every run is bounded by a request count and a time limit and stops by itself. Multipart requests
are built (whole, headers included) before the clock starts, and sent with a minimal keep-alive
HTTP/1.1 client (`benchmarks.http1`), so the client spends as little of the shared CPU as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.http1 import Http1Pool, HttpError, Response, build_request

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Record:
    """One request as the client saw it, plus what the server said about it."""

    sample: int
    label: int
    status: int  # HTTP status; 0 when no response came (timeout, connection error)
    client_ms: float
    lag_ms: float = 0.0  # open loop: how late the request left compared with its scheduled arrival
    class_id: int | None = None
    exit: int | None = None
    latency_ms: float | None = None  # server-side
    queue_ms: float | None = None
    mflops: float | None = None
    budget_met: bool | None = None
    stopped_by: str | None = None
    error: str | None = None
    error_code: str | None = None  # the "error" field of a JSON error body

    @property
    def correct(self) -> bool:
        return self.class_id is not None and self.class_id == self.label


@dataclass
class LoadSpec:
    """What one measurement point sends."""

    mode: str = "closed"  # "closed" (fixed concurrency) or "open" (Poisson arrivals at `rate`)
    concurrency: int = 1
    rate: float = 0.0  # requests per second, open loop
    requests: int = 100
    time_limit_s: float = 30.0
    timeout_s: float = 10.0
    fields: dict[str, Any] = field(default_factory=dict)  # form fields, e.g. {"budget_ms": 20}
    seed: int = 0
    raw: bool = False  # the image as the whole body to `<url>/raw`, the fields in the query string

    def describe(self) -> str:
        load = f"c={self.concurrency}" if self.mode == "closed" else f"rate={self.rate:.0f}/s"
        return f"{self.mode} {load} {self.fields or 'no budget'}" + (" raw" if self.raw else "")


@dataclass
class PointRun:
    spec: LoadSpec
    records: list[Record]
    duration_s: float
    stopped_by_time: bool
    send_window_s: float = 0.0  # first to last send: the rate the client really offered is sent / this


def check_loopback(url: str) -> None:
    """The load generator only ever targets this machine."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise ValueError(f"refusing to load-test {host!r}: only loopback addresses are allowed")


def multipart_body(sample: Sample, fields: dict[str, Any], boundary: str) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{sample.name}"\r\n'
        f"Content-Type: {sample.content_type}\r\n\r\n".encode()
        + sample.data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def parse_response(record: Record, response: Response) -> None:
    """Fill `record` from the response: the answer's fields, or the error code of a refusal."""
    if response.status_code != 200:
        record.error = response.text[:200]
        with contextlib.suppress(ValueError, AttributeError):  # not a JSON object: no code
            record.error_code = str(json.loads(response.content).get("error"))
        return
    try:
        body = json.loads(response.content)
        record.class_id = int(body["class_id"])
    except (ValueError, KeyError, TypeError) as err:
        record.status = -1  # a 200 we cannot read counts as an error
        record.error = f"unreadable response: {err}"
        return
    record.exit = body.get("exit")
    record.latency_ms = body.get("latency_ms")
    record.queue_ms = body.get("queue_ms")
    record.mflops = body.get("mflops")
    record.budget_met = body.get("budget_met")
    record.stopped_by = body.get("stopped_by")


def build_requests(url: str, samples: Sequence[Sample], fields: dict[str, Any], raw: bool = False) -> list[bytes]:
    """One whole request per sample, built before any clock starts: multipart `image` + `fields` to `url`,
    or (raw) the image as the body to `<url>/raw` with the fields in the query string."""
    if raw:
        target = f"{url.rstrip('/')}/raw" + (f"?{urlencode(fields)}" if fields else "")
        return [build_request(target, s.data, s.content_type) for s in samples]
    boundary = uuid.uuid4().hex
    content_type = f"multipart/form-data; boundary={boundary}"
    return [build_request(url, multipart_body(s, fields, boundary), content_type) for s in samples]


class LoadGenerator:
    """Posts `samples` to `url` (multipart `image` + fields, or raw bodies) according to a LoadSpec."""

    def __init__(self, url: str, samples: Sequence[Sample], max_connections: int = 256) -> None:
        check_loopback(url)
        if not samples:
            raise ValueError("no samples to send")
        self.url = url
        self.samples = list(samples)
        self.max_connections = max_connections
        self._last_send = 0.0

    async def _send(self, client: Http1Pool, index: int, request: bytes, timeout_s: float, lag_ms: float) -> Record:
        sample = self.samples[index % len(self.samples)]
        record = Record(sample=index % len(self.samples), label=sample.label, status=0, client_ms=0.0, lag_ms=lag_ms)
        start = self._last_send = time.perf_counter()
        try:
            response = await client.post(request, timeout_s)
            record.client_ms = 1000 * (time.perf_counter() - start)
            record.status = response.status_code
            parse_response(record, response)
        except (HttpError, TimeoutError) as err:
            record.client_ms = 1000 * (time.perf_counter() - start)
            record.error = f"{type(err).__name__}: {err}"[:200]
        return record

    async def run(self, spec: LoadSpec) -> PointRun:
        if spec.requests < 1:
            raise ValueError("a point needs at least one request")
        if spec.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', got {spec.mode!r}")
        count = spec.requests
        requests = build_requests(self.url, self.samples[: min(count, len(self.samples))], spec.fields, spec.raw)
        client = Http1Pool(self.url, self.max_connections)
        try:
            start = time.perf_counter()
            self._last_send = start
            if spec.mode == "closed":
                records, by_time = await self._closed(client, spec, count, requests, start)
            else:
                records, by_time = await self._open(client, spec, count, requests, start)
            duration = time.perf_counter() - start
        finally:
            client.close()
        log.debug("%s: %d requests in %.2fs", spec.describe(), len(records), duration)
        return PointRun(spec, records, duration, by_time, send_window_s=self._last_send - start)

    async def _closed(self, client: Http1Pool, spec: LoadSpec, count: int, requests: list[bytes], start: float):
        records: list[Record] = []
        next_index = 0
        stopped_by_time = False

        async def worker() -> None:
            nonlocal next_index, stopped_by_time
            while next_index < count:
                if time.perf_counter() - start > spec.time_limit_s:
                    stopped_by_time = True
                    return
                index = next_index
                next_index += 1
                request = requests[index % len(requests)]
                records.append(await self._send(client, index, request, spec.timeout_s, 0.0))

        await asyncio.gather(*(worker() for _ in range(max(1, spec.concurrency))))
        return records, stopped_by_time

    async def _open(self, client: Http1Pool, spec: LoadSpec, count: int, requests: list[bytes], start: float):
        if spec.rate <= 0:
            raise ValueError("open-loop load needs a rate > 0")
        rng = random.Random(spec.seed)
        tasks: list[asyncio.Task] = []
        scheduled = 0.0
        stopped_by_time = False
        for index in range(count):
            scheduled += rng.expovariate(spec.rate)
            if scheduled > spec.time_limit_s:
                stopped_by_time = True
                break
            delay = start + scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_ms = 1000 * max(0.0, time.perf_counter() - start - scheduled)
            request = requests[index % len(requests)]
            tasks.append(asyncio.create_task(self._send(client, index, request, spec.timeout_s, lag_ms)))
        # the per-request timeout bounds this wait
        records = list(await asyncio.gather(*tasks))
        return records, stopped_by_time


def run_point(url: str, samples: Sequence[Sample], spec: LoadSpec) -> PointRun:
    """Blocking wrapper: one measurement point (on uvloop where installed: less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(LoadGenerator(url, samples).run(spec))
    return uvloop.run(LoadGenerator(url, samples).run(spec))


def records_to_json(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
