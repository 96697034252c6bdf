"""The inference thread's wake-up: a set before the wait is not lost, a wait times out, wake-ups collapse."""

from __future__ import annotations

import os
import threading
import time

from elastic_anytime.service.engine.wakeup import Wakeup


def test_a_wake_up_sent_before_the_wait_is_kept() -> None:
    wakeup = Wakeup()
    wakeup.set()
    assert wakeup.wait(5.0) is True
    wakeup.close()


def test_wait_times_out_without_a_wake_up() -> None:
    wakeup = Wakeup()
    started = time.monotonic()
    assert wakeup.wait(0.05) is False
    assert time.monotonic() - started >= 0.04
    wakeup.close()


def test_many_wake_ups_collapse_into_one() -> None:
    wakeup = Wakeup()
    for _ in range(10):
        wakeup.set()
    assert wakeup.wait(1.0) is True
    assert wakeup.wait(0.01) is False  # all ten were consumed by the first wait
    wakeup.close()
    wakeup.set()  # after close: nobody sleeps, nothing to do, no error


def test_another_thread_wakes_a_sleeper() -> None:
    wakeup = Wakeup()
    result = []
    sleeper = threading.Thread(target=lambda: result.append(wakeup.wait(30.0)))
    sleeper.start()
    time.sleep(0.05)
    wakeup.set()
    sleeper.join(10.0)
    assert result == [True]
    wakeup.close()


def test_a_watched_fd_ends_the_wait_and_stays_unread() -> None:
    wakeup = Wakeup()
    read_fd, write_fd = os.pipe()
    wakeup.watch(read_fd)
    assert wakeup.wait(0.01) is False
    os.write(write_fd, b"job")
    assert wakeup.wait(5.0) is True
    assert os.read(read_fd, 16) == b"job"  # the watcher reads it, not the wake-up
    wakeup.unwatch(read_fd)
    os.write(write_fd, b"more")
    assert wakeup.wait(0.01) is False  # no longer watched
    wakeup.close()
    os.close(read_fd)
    os.close(write_fd)
