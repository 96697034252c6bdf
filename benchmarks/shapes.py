"""Traffic as users send it, beyond steady load: sparse requests on an idle server and bursts.

- **Sparse**: a few requests per second, evenly spaced, on one keep-alive connection, or on a new
  connection per request as curl sends them. An idle server takes other paths than a busy one (no batch
  forming, cold caches, a fresh connection to accept), so its numbers are not those of steady load.
- **Bursts**: N requests at the same instant every T seconds. The N connections are opened first and
  every request is then written in one go, with no await between the writes, so the server really
  receives them together instead of spread over the client's event loop.

Requests are built whole before the clock starts (`loadgen.build_requests`) and sent with the minimal
HTTP/1.1 client of the load generator; every request becomes a `loadgen.Record`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.http1 import Connection, HttpError, connect
from elastic_anytime.benchmarks.loadgen import Record, build_requests, check_loopback, parse_response

log = logging.getLogger(__name__)


@dataclass
class SparseSpec:
    """Evenly spaced requests, one at a time."""

    rate: float  # requests per second
    requests: int
    fields: dict[str, Any] = field(default_factory=dict)
    new_connection: bool = False  # curl-like: connect, send, read, close for every request
    raw: bool = False
    time_limit_s: float = 120.0
    timeout_s: float = 10.0

    def describe(self) -> str:
        how = "new connection each" if self.new_connection else "keep-alive"
        return f"sparse {self.rate:g}/s {how} {self.fields or 'no budget'}"


@dataclass
class BurstSpec:
    """`size` requests written at the same instant, `bursts` times, `interval_s` apart."""

    size: int
    bursts: int
    interval_s: float
    fields: dict[str, Any] = field(default_factory=dict)
    raw: bool = False
    timeout_s: float = 10.0

    def describe(self) -> str:
        return f"bursts of {self.size} ×{self.bursts} every {self.interval_s:g}s {self.fields or 'no budget'}"


@dataclass
class ShapeRun:
    records: list[Record]
    duration_s: float  # sparse: first send to last answer; bursts: the bursts' spans added (idle time left out)
    stopped_by_time: bool = False


def _record(samples: Sequence[Sample], index: int) -> Record:
    k = index % len(samples)
    return Record(sample=k, label=samples[k].label, status=0, client_ms=0.0)


def _failed(record: Record, err: BaseException, start: float) -> None:
    record.client_ms = 1000 * (time.perf_counter() - start)
    record.error = f"{type(err).__name__}: {err}"[:200]


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _sparse(url: str, samples: Sequence[Sample], spec: SparseSpec) -> ShapeRun:
    if spec.rate <= 0 or spec.requests < 1:
        raise ValueError("sparse traffic needs a rate > 0 and at least one request")
    host, port = _address(url)
    requests = build_requests(url, samples[: spec.requests], spec.fields, spec.raw)
    records: list[Record] = []
    kept: Connection | None = None
    stopped_by_time = False
    start = time.perf_counter()
    try:
        for index in range(spec.requests):
            scheduled = start + index / spec.rate
            if scheduled - start > spec.time_limit_s:
                stopped_by_time = True
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            record = _record(samples, index)
            sent = time.perf_counter()
            record.lag_ms = 1000 * max(0.0, sent - scheduled)
            connection, kept = kept, None
            try:
                connection = connection or await connect(host, port, spec.timeout_s)
                response, reusable = await asyncio.wait_for(
                    connection.exchange(requests[index % len(requests)]), spec.timeout_s
                )
            except (HttpError, TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                if connection is not None:
                    connection.close()
                _failed(record, err, sent)
                records.append(record)
                continue
            record.client_ms = 1000 * (time.perf_counter() - sent)
            record.status = response.status_code
            parse_response(record, response)
            records.append(record)
            if reusable and not spec.new_connection:
                kept = connection
            else:
                connection.close()
    finally:
        if kept is not None:
            kept.close()
    return ShapeRun(records, time.perf_counter() - start, stopped_by_time)


async def _receive(connection: Connection, record: Record, sent: float, timeout_s: float) -> bool:
    """Read one burst answer into `record`; whether the connection can take the next burst."""
    try:
        response, reusable = await asyncio.wait_for(connection.receive(), timeout_s)
    except (HttpError, TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        _failed(record, err, sent)
        return False
    record.client_ms = 1000 * (time.perf_counter() - sent)
    record.status = response.status_code
    parse_response(record, response)
    return reusable


async def _bursts(url: str, samples: Sequence[Sample], spec: BurstSpec) -> ShapeRun:
    if spec.size < 1 or spec.bursts < 1:
        raise ValueError("a burst needs at least one request, and a point at least one burst")
    host, port = _address(url)
    requests = build_requests(url, samples[: spec.size * spec.bursts], spec.fields, spec.raw)
    records: list[Record] = []
    connections: list[Connection | None] = [None] * spec.size
    busy_s = 0.0
    try:
        for burst in range(spec.bursts):
            if burst:
                await asyncio.sleep(spec.interval_s)
            # open (or reopen) every connection first, so the burst itself writes only requests; one the
            # server closed while idle (its keep-alive timeout) is reopened too
            for k, connection in enumerate(connections):
                if connection is not None and (connection.reader.at_eof() or connection.writer.is_closing()):
                    connection.close()
                    connection = None
                if connection is None:
                    with contextlib.suppress(HttpError, TimeoutError):
                        connections[k] = await connect(host, port, spec.timeout_s)
            await asyncio.sleep(0.05)  # let the server accept them all before the burst
            batch = [_record(samples, burst * spec.size + k) for k in range(spec.size)]
            sent = [0.0] * spec.size
            for k, connection in enumerate(connections):  # no await in this loop: the writes go out together
                sent[k] = time.perf_counter()
                if connection is not None:
                    connection.send(requests[(burst * spec.size + k) % len(requests)])
            first = sent[0]
            receives = [
                _receive(c, batch[k], sent[k], spec.timeout_s) if c is not None else _unconnected(batch[k])
                for k, c in enumerate(connections)
            ]
            reusable = await asyncio.gather(*receives)
            busy_s += time.perf_counter() - first
            for k, keep in enumerate(reusable):
                if not keep and connections[k] is not None:
                    connections[k].close()  # type: ignore[union-attr]
                    connections[k] = None
            records.extend(batch)
    finally:
        for connection in connections:
            if connection is not None:
                connection.close()
    return ShapeRun(records, busy_s)


async def _unconnected(record: Record) -> bool:
    record.error = "HttpError: could not connect before the burst"
    return False


def _run(coroutine: Any) -> ShapeRun:
    """On uvloop where installed, as the load generator (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _checked_run(url: str, samples: Sequence[Sample], shape: Callable[[], Any], what: str) -> ShapeRun:
    """Run `shape()` (the shape's coroutine, made only once the target and the samples are checked)."""
    check_loopback(url)
    if not samples:
        raise ValueError("no samples to send")
    run = _run(shape())
    log.debug("%s: %d requests in %.3fs", what, len(run.records), run.duration_s)
    return run


def run_sparse(url: str, samples: Sequence[Sample], spec: SparseSpec) -> ShapeRun:
    return _checked_run(url, samples, lambda: _sparse(url, samples, spec), spec.describe())


def run_bursts(url: str, samples: Sequence[Sample], spec: BurstSpec) -> ShapeRun:
    return _checked_run(url, samples, lambda: _bursts(url, samples, spec), spec.describe())
