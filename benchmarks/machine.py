"""What machine the numbers come from: the first lines of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def accelerator(device: str) -> dict[str, Any]:
    """The device the model runs on; for CUDA the GPU's name, memory and the CUDA/cuDNN versions."""
    resolved = torch.device(device)
    if resolved.type != "cuda":
        return {"device": resolved.type, "gpu": None}
    props = torch.cuda.get_device_properties(resolved)
    return {
        "device": str(resolved),
        "gpu": torch.cuda.get_device_name(resolved),
        "gpu_memory_gib": round(props.total_memory / 1024**3, 1),
        "gpu_multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def describe(threads: int, device: str = "cpu") -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "torch_threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "litserve": _version("litserve"),
        "httpx": _version("httpx"),
        "uvicorn": _version("uvicorn"),
        "load_average_at_start": [round(v, 2) for v in load] if load else None,
        **accelerator(device),
    }


PROBE_ADDS = 2_000_000


def speed_probe_ms(repeats: int = 3) -> float:
    """A fixed piece of pure-Python work (integer adds), best of `repeats`, in ms: how fast this machine runs
    Python right now. A shared VM's speed moves by tens of percent within the hour; this shows where a run
    sat, at its start and its end."""
    best = float("inf")
    for _ in range(repeats):
        started, total = time.perf_counter(), 0
        for value in range(PROBE_ADDS):
            total += value
        best = min(best, time.perf_counter() - started)
    return round(1e3 * best, 1)


def cpu_ticks() -> tuple[int, int] | None:
    """(all CPU time, the part the hypervisor gave to other guests: steal), in ticks since boot; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


class Steadiness:
    """How steady the machine was over a run: the speed probe at its start and end, and the share of CPU
    time stolen by the hypervisor in between."""

    def __init__(self) -> None:
        self.start_ms = speed_probe_ms()
        self._ticks = cpu_ticks()

    def finish(self) -> dict[str, Any]:
        ticks, stolen = cpu_ticks(), None
        if ticks is not None and self._ticks is not None and ticks[0] > self._ticks[0]:
            stolen = round((ticks[1] - self._ticks[1]) / (ticks[0] - self._ticks[0]), 4)
        return {"speed_probe_ms": [self.start_ms, speed_probe_ms()], "steal_share": stolen}
