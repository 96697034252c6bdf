"""The overrun watch's timer: jobs come due in time order, from its own thread, and a failing
callback does not stop it."""

from __future__ import annotations

import threading
import time

from service.overrun import OverrunWatch


def test_jobs_come_due_in_time_order_and_not_before() -> None:
    seen: list[tuple[str, float]] = []
    done = threading.Event()

    def due(jobs: list[str]) -> None:
        seen.extend((job, time.monotonic()) for job in jobs)
        if len(seen) == 3:
            done.set()

    watch = OverrunWatch(time.monotonic, due)
    watch.start()
    try:
        now = time.monotonic()
        watch.arm([(now + 0.20, "late")])
        watch.arm([(now + 0.05, "early"), (now + 0.10, "middle")])  # earlier than the one it sleeps for
        assert done.wait(2)
    finally:
        watch.stop()
    assert [job for job, _ in seen] == ["early", "middle", "late"]
    for (_, at), offset in zip(seen, (0.05, 0.10, 0.20), strict=True):
        assert at >= now + offset


def test_a_failing_callback_does_not_stop_the_watch() -> None:
    calls: list[list[int]] = []
    second = threading.Event()

    def due(jobs: list[int]) -> None:
        calls.append(jobs)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    watch = OverrunWatch(time.monotonic, due)
    watch.start()
    try:
        watch.arm([(time.monotonic(), 1)])
        time.sleep(0.05)
        watch.arm([(time.monotonic(), 2)])
        assert second.wait(2)
    finally:
        watch.stop()
    assert calls == [[1], [2]]


def test_stop_ends_the_thread_with_jobs_still_armed() -> None:
    watch = OverrunWatch(time.monotonic, lambda jobs: None)
    watch.start()
    watch.arm([(time.monotonic() + 60, "never")])
    watch.stop(timeout=2)
    assert not watch._thread.is_alive()
