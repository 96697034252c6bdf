"""What machine the numbers come from: the first lines of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
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
