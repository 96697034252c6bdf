"""service.worker.restart_policy on a fake clock: the back-off between restarts of the inference process, and
the liveness rule (3 failed restarts within 60 s: not alive). Then the process engine applying it, its
child replaced by fakes: what a request, readiness and liveness see while it restarts, the mirror of the
profile refilled by the replacement, and no restart once it stops. (tests/e2e/test_engine_process.py
kills a real inference process under load.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.types import EngineConfig, Job, UnavailableError
from elastic_anytime.service.worker.client import EngineProcess
from elastic_anytime.service.worker.restart_policy import RestartPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_first_restart_goes_at_once_then_the_delay_doubles_up_to_its_cap(clock: FakeClock) -> None:
    policy = RestartPolicy(clock)
    policy.child_ready()  # the first child served
    delays = []
    for _ in range(8):  # each replacement dies before it says ready
        delays.append(policy.child_exited())
        clock.advance(1.0)
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.restarts == 8 and policy.attempt == 8


def test_three_failed_restarts_within_60_s_make_the_server_not_alive(clock: FakeClock) -> None:
    policy = RestartPolicy(clock)
    policy.child_ready()
    clock.advance(3600.0)
    policy.child_exited()  # the serving child died: restart 1 begins, nothing has failed yet
    assert policy.live and policy.recent_failures() == 0
    clock.advance(20.0)
    policy.child_exited()  # restart 1 died before it said ready: failure 1, restart 2 begins
    clock.advance(20.0)
    policy.child_exited()  # failure 2
    assert policy.live and policy.recent_failures() == 2
    clock.advance(19.0)
    policy.child_exited()  # failure 3, 39 s after the first
    assert not policy.live and policy.recent_failures() == 3
    clock.advance(21.5)  # the first failure is now 60.5 s old: two failed within the window
    assert policy.live and policy.recent_failures() == 2


def test_failures_spread_wider_than_the_window_keep_the_server_alive(clock: FakeClock) -> None:
    policy = RestartPolicy(clock)
    policy.child_ready()
    policy.child_exited()
    for _ in range(10):  # a restart fails every 31 s: never three within 60 s
        clock.advance(31.0)
        policy.child_exited()
        assert policy.live
    assert policy.recent_failures() == 2


def test_a_successful_restart_makes_the_server_alive_again_at_once(clock: FakeClock) -> None:
    policy = RestartPolicy(clock)
    policy.child_ready()
    for _ in range(4):
        policy.child_exited()
        clock.advance(2.0)
    assert not policy.live
    policy.child_ready()  # restart 4 said ready
    assert policy.live and policy.recent_failures() == 0


def test_dying_right_after_ready_is_no_failed_restart_but_keeps_backing_off(clock: FakeClock) -> None:
    policy = RestartPolicy(clock)
    policy.child_ready()
    delays = []
    for _ in range(5):  # each replacement says ready, then dies 5 s later (before stable_s)
        clock.advance(5.0)
        delays.append(policy.child_exited())
        clock.advance(3.0)
        policy.child_ready()
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert policy.live and policy.recent_failures() == 0
    clock.advance(30.0)  # this one served for stable_s: the next death starts a new row, at once
    assert policy.child_exited() == 0.0 and policy.attempt == 1


def test_the_first_child_dying_is_not_a_failed_restart(clock: FakeClock) -> None:
    policy = RestartPolicy(clock, max_failures=1)
    policy.child_ready()
    policy.child_exited()  # the serving child died: no restart had failed
    assert policy.live
    policy.child_exited()  # its replacement died before it said ready
    assert not policy.live


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(max_failures=0)
    with pytest.raises(ValueError):
        RestartPolicy(window_s=0.0)


# -- the process engine applying it (no real child) -----------------------------------------------------


class FakeWriter:
    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.closed = False

    def send(self, header: dict, payload: bytes = b"") -> None:
        self.sent.append(header)

    def close(self) -> None:
        self.closed = True


class FakeReader:
    def fileno(self) -> int:
        raise ValueError("not a real pipe")

    def close(self) -> None:
        pass


class FakeProcess:
    def __init__(self, exitcode: int | None = -9) -> None:
        self.exitcode, self.killed = exitcode, False

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return self.exitcode is None and not self.killed

    def kill(self) -> None:
        self.killed = True


class Counter:
    def __init__(self) -> None:
        self.restarts = 0

    def engine_restarted(self) -> None:
        self.restarts += 1


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def serving_engine(loop: asyncio.AbstractEventLoop, clock: FakeClock) -> tuple[EngineProcess, list[FakeWriter]]:
    """An engine whose (fake) child has said ready; each restart 'spawns' a fake child with a new writer."""
    profile = LatencyProfile(2, [1, 2])
    engine = EngineProcess({}, profile, EngineConfig(max_batch_size=2, handoff_quantile=None), observer=Counter())
    engine.restart_policy = RestartPolicy(clock)
    writers = [FakeWriter()]

    def spawn() -> FakeWriter:
        engine._reader, engine._process = FakeReader(), FakeProcess()
        writers.append(FakeWriter())
        return writers[-1]

    engine._spawn = spawn  # type: ignore[method-assign]
    engine._loop, engine._writer, engine._reader, engine._process = loop, writers[0], FakeReader(), FakeProcess()
    calibration = [("profile", "observe", (k, b, 0.004, 0.001)) for k in range(2) for b in (1, 2)]
    engine._handle(("ready", SERVED, calibration * 3))
    assert engine.accepting and engine.profile.sample_count(0, 1) == 3
    return engine, writers


SERVED = {"checkpoint": "/models/served", "num_exits": 2}  # what a child says it serves when ready


def job(loop: asyncio.AbstractEventLoop) -> Job:
    return Job(torch.zeros(3, 8, 8), Budget(), 0.0, loop.create_future())


def run_once(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.01))  # runs what call_later(0, ...) scheduled


def test_a_dead_child_fails_its_requests_refuses_new_ones_and_is_replaced(
    loop: asyncio.AbstractEventLoop, clock: FakeClock
) -> None:
    engine, writers = serving_engine(loop, clock)
    held = job(loop)
    engine.submit(held)
    assert writers[0].sent[-1]["kind"] == "job"
    engine._child_gone()  # killed
    with pytest.raises(UnavailableError, match=r"exited \(signal 9, SIGKILL\); restarting it"):
        held.future.result()
    assert not engine.accepting and engine.restarting and engine.queue_depth == 0
    assert engine.ready_detail == "the inference process exited (signal 9, SIGKILL); restarting it, attempt 1"
    assert engine.health_detail is None  # alive: it is healing
    assert writers[0].closed
    refused = job(loop)
    engine.submit(refused)  # raced past the route's check: refused at once, not sent anywhere
    with pytest.raises(UnavailableError, match=r"is restarting after it exited \(signal 9, SIGKILL\) \(attempt 1\)"):
        refused.future.result()
    assert engine.queue_depth == 0

    run_once(loop)  # the first restart goes at once
    assert len(writers) == 2 and engine.observer.restarts == 1
    assert not engine.accepting  # warming up: its pipe is not used before it says ready
    engine._handle(("ready", SERVED, [("profile", "observe", (0, 1, 0.009, 0.001))]))
    assert engine.accepting and not engine.restarting and engine.ready_detail is None
    assert engine.profile.sample_count(0, 1) == 1  # the mirror holds the new child's calibration only
    assert engine.profile.predict(0, 1, "p50") == pytest.approx(0.010)
    served = job(loop)
    engine.submit(served)
    assert writers[1].sent[-1]["kind"] == "job"


def test_three_failed_restarts_within_60_s_fail_liveness(loop: asyncio.AbstractEventLoop, clock: FakeClock) -> None:
    engine, _ = serving_engine(loop, clock)
    engine._child_gone()
    for failure in range(3):
        engine._restart()
        clock.advance(5.0)
        engine._handle(("failed", "calibration failed: CUDA error: out of memory"))
        engine._child_gone()
        if failure < 2:
            assert engine.health_detail is None
    assert engine.health_detail == (
        "the inference process cannot be restarted: 3 restarts failed within 60s, the last one failed: "
        "calibration failed: CUDA error: out of memory; still trying (attempt 4)"
    )
    assert engine.error is None and engine.observer.restarts == 3
    engine._restart()
    engine._handle(("ready", SERVED, []))  # healed after all
    assert engine.health_detail is None and engine.accepting


def test_no_restart_once_stopping(loop: asyncio.AbstractEventLoop, clock: FakeClock) -> None:
    engine, writers = serving_engine(loop, clock)
    engine._process = FakeProcess(exitcode=0)  # it ends as told
    engine.stop(timeout=0.0)
    engine._child_gone()  # its pipe closes during the stop
    run_once(loop)
    assert len(writers) == 1 and engine.observer.restarts == 0 and not engine.restarting
    assert engine.health_detail is None


def test_a_child_dying_before_the_stop_is_not_replaced_after_it(
    loop: asyncio.AbstractEventLoop, clock: FakeClock
) -> None:
    engine, writers = serving_engine(loop, clock)
    engine._child_gone()  # a restart is due...
    engine.stop(timeout=0.0)  # ...when the server stops
    run_once(loop)
    assert len(writers) == 1 and engine.observer.restarts == 0


def test_a_first_child_that_never_gets_ready_fails_the_engine_for_good(loop: asyncio.AbstractEventLoop) -> None:
    engine = EngineProcess({}, LatencyProfile(1, [1]), EngineConfig(handoff_quantile=None), observer=Counter())
    restarted: list[Any] = []
    engine._spawn = lambda: restarted.append(1)  # type: ignore[method-assign, assignment, return-value]
    engine._loop, engine._writer, engine._reader, engine._process = loop, FakeWriter(), FakeReader(), FakeProcess(1)
    engine._handle(("failed", "FileNotFoundError: no checkpoint"))
    engine._child_gone()
    run_once(loop)
    assert not restarted and not engine.restarting
    assert engine.health_detail == "the engine failed: FileNotFoundError: no checkpoint"
