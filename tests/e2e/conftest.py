"""End-to-end fixtures. The server helper lives in `e2e_server.py` so that other test directories can
import it (`from e2e_server import serve`); `server_url` shares one default server per test module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import e2e_server` from any rootdir/import mode

from e2e_server import ServerProcess, free_port, serve

__all__ = ["ServerProcess", "free_port", "serve"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts a real server: all are `slow` (deselected by `make test-fast`). The hook sees the
    whole session's items, hence the path check."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """One server with default settings for the whole test module."""
    with serve() as server:
        yield server.url
