"""How big each suite run is. `full` is what `make bench` runs (about 12 minutes on 2 cores, of which the
traffic shapes take about 2.5); `small` proves the pipeline end to end in a couple of minutes; `smoke` is for
tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeSize:
    """The traffic-shapes phase (benchmarks/traffic.py). Sparse points last requests / rate seconds, so
    their counts set most of the phase's time; bursts and hey are short at any size."""

    sparse_requests: int  # keep-alive, evenly spaced at sparse_rate
    sparse_rate: float
    sparse_budget_ms: float
    curl_requests: int  # a new connection per request, like curl
    curl_rate: float
    curl_budget_ms: float
    burst_sizes: tuple[int, ...]
    burst_budgets_ms: tuple[float, ...]
    bursts: int  # per point
    burst_interval_s: float
    hey_requests: int  # per hey point
    hey_concurrency: int
    hey_qps: float  # per hey worker: offered = concurrency × qps
    hey_budgets_ms: tuple[float, ...]
    closed_requests: int  # per closed-loop goodput point, and for its full-depth baseline
    closed_concurrency: int
    closed_budgets_ms: tuple[float, ...]


SHAPES = {
    "smoke": ShapeSize(
        sparse_requests=10,
        sparse_rate=10.0,
        sparse_budget_ms=5.0,
        curl_requests=5,
        curl_rate=10.0,
        curl_budget_ms=4.0,
        burst_sizes=(16, 32),
        burst_budgets_ms=(10.0, 50.0),
        bursts=1,
        burst_interval_s=0.2,
        hey_requests=64,
        hey_concurrency=16,
        hey_qps=20.0,
        hey_budgets_ms=(30.0,),
        closed_requests=48,
        closed_concurrency=8,
        closed_budgets_ms=(8.0,),
    ),
    "small": ShapeSize(
        sparse_requests=50,
        sparse_rate=10.0,
        sparse_budget_ms=5.0,
        curl_requests=10,
        curl_rate=5.0,
        curl_budget_ms=4.0,
        burst_sizes=(16, 32),
        burst_budgets_ms=(10.0, 25.0, 50.0),
        bursts=2,
        burst_interval_s=0.5,
        hey_requests=480,
        hey_concurrency=16,
        hey_qps=20.0,
        hey_budgets_ms=(30.0, 10.0),
        closed_requests=400,
        closed_concurrency=8,
        closed_budgets_ms=(8.0, 15.0),
    ),
    # about 150 s: sparse 60 s, curl-like 10 s, bursts 8 × 3 s, hey 3 × 9.4 s, closed loop 5 × 3-4 s
    "full": ShapeSize(
        sparse_requests=300,
        sparse_rate=5.0,
        sparse_budget_ms=5.0,
        curl_requests=20,
        curl_rate=2.0,
        curl_budget_ms=4.0,
        burst_sizes=(16, 32),
        burst_budgets_ms=(10.0, 20.0, 25.0, 50.0),
        bursts=3,
        burst_interval_s=1.0,
        hey_requests=3000,
        hey_concurrency=16,
        hey_qps=20.0,
        hey_budgets_ms=(30.0, 10.0, 20.0),
        closed_requests=2000,
        closed_concurrency=8,
        closed_budgets_ms=(8.0, 10.0, 15.0, 25.0),
    ),
}


@dataclass(frozen=True)
class SuiteSize:
    name: str
    images: int  # distinct test images posted and evaluated in-process
    timing_images: int  # images timed one by one per exit in-process
    c1_requests: int  # per closed-loop concurrency-1 point
    saturation_requests: int  # per closed-loop saturation point
    saturation_concurrency: int
    load_requests: int  # per open-loop point
    loads: tuple[float, ...]  # open-loop rates as multiples of full-depth saturation throughput
    budgets_ms: tuple[float, ...]
    warmup_requests: int
    time_limit_s: float  # per point; every point also stops at its request count
    shapes: ShapeSize  # the traffic-shapes phase


SIZES = {
    "smoke": SuiteSize("smoke", 24, 12, 12, 32, 8, 24, (0.5, 2.0), (4.0, 50.0), 4, 20.0, SHAPES["smoke"]),
    "small": SuiteSize(
        "small", 200, 40, 60, 240, 16, 150, (0.5, 0.8, 2.0), (3.0, 5.0, 8.0, 15.0), 20, 30.0, SHAPES["small"]
    ),
    "full": SuiteSize(
        "full",
        2000,
        300,
        500,
        2000,
        32,
        1000,
        (0.5, 0.8, 2.0),
        (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 25.0),
        50,
        60.0,
        SHAPES["full"],
    ),
}
