"""One interface, `EngineApi` (service.engine.types), for the engine in a thread, in an engine process, and
over several engine processes: the front end reads any of them the same way, with no getattr or isinstance."""

from __future__ import annotations

from engine_fixtures import make_engine, tiny_checkpoint

from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import EngineApi, EngineConfig
from elastic_anytime.service.worker.client import EngineProcess
from elastic_anytime.service.worker.group import EngineGroup


def test_every_engine_offers_the_one_interface() -> None:
    thread_engine, _, _ = make_engine(tiny_checkpoint())
    process_engine = EngineProcess({}, LatencyProfile(3, [1, 2]), EngineConfig())
    group = EngineGroup([EngineProcess({}, LatencyProfile(3, [1, 2]), EngineConfig()) for _ in range(2)])
    for engine in (thread_engine, process_engine, group):
        assert isinstance(engine, EngineApi), type(engine).__name__
    # all is well: no health detail from any of them
    assert thread_engine.health_detail is None and thread_engine.ready_detail is None
    assert process_engine.health_detail is None and group.health_detail is None


def test_a_thread_engine_that_failed_says_so_as_its_health() -> None:
    engine, _, _ = make_engine(tiny_checkpoint())
    engine.error = RuntimeError("CUDA error: out of memory")
    assert engine.health_detail == "the engine failed: CUDA error: out of memory"
