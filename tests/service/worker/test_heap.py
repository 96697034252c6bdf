"""freeze_long_lived: what is alive once a process is set up leaves the collector's generations, so that a
full collection no longer walks it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from elastic_anytime.service.worker.heap import freeze_long_lived


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


@pytest.mark.parametrize("collect_first", [True, False])
def test_what_is_alive_is_frozen_and_what_comes_after_is_not(collect_first: bool) -> None:
    long_lived = [{"a model": "and its schemas"}]
    assert _tracked(long_lived)
    frozen = freeze_long_lived("test", collect_first=collect_first)
    assert frozen == gc.get_freeze_count() > 0
    assert not _tracked(long_lived)
    per_request = [{"an answer": 1}]
    assert _tracked(per_request)
