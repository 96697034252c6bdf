"""How big each suite run is. `full` is what `make bench` runs (about 10 minutes on 2 cores);
`small` proves the pipeline end to end in a couple of minutes; `smoke` is for tests."""

from __future__ import annotations

from dataclasses import dataclass


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


SIZES = {
    "smoke": SuiteSize("smoke", 24, 12, 12, 32, 8, 24, (0.5, 2.0), (4.0, 50.0), 4, 20.0),
    "small": SuiteSize("small", 200, 40, 60, 240, 16, 150, (0.5, 0.8, 2.0), (3.0, 5.0, 8.0, 15.0), 20, 30.0),
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
    ),
}
