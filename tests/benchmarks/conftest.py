"""Benchmark tests: helpers importable as `bench_images` and `e2e_server` (tests/e2e), and the classes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from elastic_anytime.models.checkpoint import read_metadata
from elastic_anytime.models.pretrained import default_checkpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `import bench_images`
sys.path.insert(0, str(HERE.parent / "e2e"))  # `import e2e_server`


@pytest.fixture(scope="session")
def classes() -> list[str]:
    return list(read_metadata(default_checkpoint())["classes"])
