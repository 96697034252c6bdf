"""EngineGroup (service.worker.group): one front end over several engine processes. Jobs go to the serving
engine with the fewest of its jobs outstanding, cancels follow their job, a reload reaches every engine,
and the front end is unavailable (or not alive) only when every engine is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elastic_anytime.service.engine.front_costs import FrontEndCosts
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.engine.types import Job, UnavailableError
from elastic_anytime.service.worker.group import EngineGroup, engine_links


class FakeLink:
    """The part of EngineProcess the group uses."""

    def __init__(self, name: str) -> None:
        self.name, self.accepting, self.error = name, True, None
        self.config, self.clock, self.front_costs = None, lambda: 0.0, FrontEndCosts(None, lambda: 0.0)
        self.profile, self.on_model, self.handoff_s = f"profile of {name}", None, 0.001
        self.jobs: list[Job] = []
        self.cancelled: list[Job] = []
        self.reloaded: list[Path] = []
        self.refuse_reload = False
        self.ready_detail = self.unavailable_detail = self.health_detail = None

    @property
    def queue_depth(self) -> int:
        return sum(1 for job in self.jobs if not job.future.done())

    @contextlib.contextmanager
    def arriving(self) -> Iterator[object]:
        yield object()

    def submit(self, job: Job, arrival: Any = None) -> None:
        self.jobs.append(job)

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job)

    def reload(self, path: Path, timeout: float) -> dict[str, float]:
        if self.refuse_reload:
            raise ReloadError(422, "invalid_checkpoint", "broken")
        self.reloaded.append(path)
        return {"load_s": 0.1, "calibrate_s": 1.0 if self.name == "b" else 0.5}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def job(loop: asyncio.AbstractEventLoop) -> Job:
    return Job(None, Budget(), 0.0, loop.create_future())


def test_one_link_per_socket() -> None:
    links = engine_links({"ELASTIC_ENGINE_SOCKET": "/run/a.sock,/run/b.sock", "ELASTIC_DEVICE": "auto"})
    assert [link["ELASTIC_ENGINE_SOCKET"] for link in links] == ["/run/a.sock", "/run/b.sock"]
    assert all(link["ELASTIC_DEVICE"] == "auto" for link in links)
    assert engine_links({"ELASTIC_DEVICE": "cpu"}) == [{"ELASTIC_DEVICE": "cpu"}]


def test_jobs_go_to_the_engine_with_the_shortest_queue(loop: asyncio.AbstractEventLoop) -> None:
    a, b = FakeLink("a"), FakeLink("b")
    group = EngineGroup([a, b])  # type: ignore[list-item]
    jobs = [job(loop) for _ in range(6)]
    for j in jobs:
        group.submit(j)
    assert len(a.jobs) == len(b.jobs) == 3  # equal queues: in turn
    for j in a.jobs:  # a's answers came back: its queue is empty, b's is not
        j.future.set_result(None)
    more = [job(loop) for _ in range(3)]
    for j in more:
        group.submit(j)
    assert all(j in a.jobs for j in more)
    assert group.queue_depth == 3 + 3


def test_a_cancel_follows_its_job_and_a_down_engine_is_skipped(loop: asyncio.AbstractEventLoop) -> None:
    a, b = FakeLink("a"), FakeLink("b")
    group = EngineGroup([a, b])  # type: ignore[list-item]
    first = job(loop)
    group.submit(first)
    group.cancel(first)
    assert first in a.cancelled and not b.cancelled
    a.accepting, a.unavailable_detail = False, "the inference process is restarting after it exited"
    for _ in range(3):
        group.submit(job(loop))
    assert len(b.jobs) == 3 and len(a.jobs) == 1
    assert group.accepting and group.unavailable_detail is None


def test_unavailable_and_not_alive_only_when_every_engine_is(loop: asyncio.AbstractEventLoop) -> None:
    a, b = FakeLink("a"), FakeLink("b")
    group = EngineGroup([a, b])  # type: ignore[list-item]
    a.accepting, a.health_detail = False, "the inference process cannot be restarted"
    assert group.health_detail is None  # b serves
    b.accepting = False
    b.unavailable_detail = b.ready_detail = "the inference process is restarting (attempt 1)"
    b.health_detail = "b cannot be restarted either"
    assert not group.accepting and group.health_detail == "the inference process cannot be restarted"
    assert group.ready_detail == "the inference process is restarting (attempt 1)"
    with pytest.raises(UnavailableError, match="restarting"):
        group.submit(job(loop))


def test_a_reload_reaches_every_engine_and_a_refusal_stops_it() -> None:
    a, b = FakeLink("a"), FakeLink("b")
    group = EngineGroup([a, b])  # type: ignore[list-item]
    timings = group.reload(Path("/models/new"), 60.0)
    assert a.reloaded == b.reloaded == [Path("/models/new")]
    assert timings == {"load_s": 0.1, "calibrate_s": 1.0}  # the slowest engine's
    a.refuse_reload = True
    with pytest.raises(ReloadError):
        group.reload(Path("/models/broken"), 60.0)
    assert b.reloaded == [Path("/models/new")]  # not tried after the first refusal
    group.on_model = print
    assert a.on_model is b.on_model is print
