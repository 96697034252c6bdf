"""Which CPUs the server process and its inference process run on (`ELASTIC_CPU_PLACEMENT`).

Why: work handed between threads on different cores costs more the more they move. On the lent
16-core machine the server answered at concurrency 1 in 3.81 ms packed onto two cores against 5.01 ms
free to move (docs/performance.md, "Where the threads run"). With the engine in its own process, the
inference process can have CPUs of its own and the server the rest: the model's caches stay warm and
the event loop never takes the model's core. On the 2-core VM that made no difference that its noise
would show (docs/performance.md, "CPU placement of the two processes"), so it is not the default.

It also says how many intra-op threads the model gets when `ELASTIC_TORCH_THREADS` is 0 (`engine_threads`):
the CPUs left once each front end has one.

- `off` (the default): no pinning.
- `auto`: the inference process gets the last `torch_threads` CPUs that this process may use, the
  server the others. Only where those CPUs are the server's alone: not under a CPU quota smaller than
  the CPU set (a shared host; pinned threads would queue behind others), not with several workers
  (their inference processes would share one CPU), not with torch's default thread count (0: the model
  uses every CPU), not with fewer than two CPUs.
- `SERVER:INFERENCE`, e.g. `0-2:3`: those CPU lists (Linux cpuset syntax).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    server: frozenset[int]
    inference: frozenset[int]

    def describe(self) -> dict[str, str]:
        return {"server": format_cpus(self.server), "inference": format_cpus(self.inference)}


def parse_cpus(text: str) -> frozenset[int]:
    """`0-2,5` → {0, 1, 2, 5}. ValueError on anything else (or an empty list)."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list such as 0-2,5")
        low, high = int(first), int(last) if sep else int(first)
        if high < low:
            raise ValueError(f"{part.strip()!r}: the range runs backwards")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    """{0, 1, 2, 5} → `0-2,5`."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def check_setting(value: str) -> str:
    """`auto`, `off` or `SERVER:INFERENCE`; raises ValueError with the reason."""
    if value in ("auto", "off"):
        return value
    server, sep, inference = value.partition(":")
    if not sep:
        raise ValueError("must be 'auto', 'off' or SERVER:INFERENCE CPU lists such as 0-2:3")
    if parse_cpus(server) & parse_cpus(inference):
        raise ValueError("the server's and the inference process's CPUs must not overlap")
    return value


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """This process's CPU quota in CPUs (cgroup v2 cpu.max, or v1 cfs quota/period); None: unlimited."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    return None


def usable_cpus() -> int:
    """The CPUs this process may use: its CPU set, capped by its cgroup's CPU quota (at least 1)."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, int(limit)) if limit is not None else cpus)


def engine_threads(requested: int, front_ends: int = 1, engines: int = 1) -> int:
    """torch's intra-op threads for one engine: `requested`, or for 0 the usable CPUs less one per front end,
    shared by the engines (at least 1). torch's own default takes every CPU, and its threads then preempt
    the front ends that read and answer the requests (docs/real-traffic.md: sparse requests on 2 CPUs)."""
    if requested > 0:
        return requested
    return max(1, (usable_cpus() - front_ends) // max(1, engines))


def plan(
    setting: str, allowed: frozenset[int], torch_threads: int, cpu_limit: float | None, several_workers: bool
) -> tuple[Placement | None, str]:
    """The placement for `setting` on this machine, and why (for the log)."""
    if setting == "off":
        return None, "off"
    if setting != "auto":
        server, _, inference = setting.partition(":")
        return Placement(parse_cpus(server), parse_cpus(inference)), "as set"
    if len(allowed) < 2:
        return None, "auto: one CPU"
    if torch_threads < 1 or torch_threads >= len(allowed):
        return None, "auto: the model's threads may use every CPU (set ELASTIC_TORCH_THREADS below the CPU count)"
    if several_workers:
        return None, "auto: several workers"
    if cpu_limit is not None and cpu_limit < len(allowed):
        return None, f"auto: a CPU quota of {cpu_limit:g} on {len(allowed)} CPUs (a shared host)"
    ordered = sorted(allowed)
    return Placement(frozenset(ordered[:-torch_threads]), frozenset(ordered[-torch_threads:])), "auto"


def plan_here(setting: str, torch_threads: int) -> Placement | None:
    """`plan` for this process, logged."""
    if setting == "off":  # the default: nothing to read or log
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    several_workers = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))  # set by `elastic serve --workers N`
    placement, why = plan(setting, allowed, torch_threads, cgroup_cpu_limit(), several_workers)
    if placement is None:
        log.info("CPU placement: none (%s)", why)
    else:
        log.info("CPU placement (%s): server on CPUs %s, inference process on %s", why, *placement.describe().values())
    return placement


def pin_this_process(cpus: frozenset[int]) -> None:
    """Every thread of this process (and the threads they start later) on `cpus`."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(int(tid), cpus)
