"""A wake-up for a thread that sleeps between batches, sent through a socket pair.

Why not `threading.Condition`: `notify()` wakes the sleeper with a system call made while the caller
holds the GIL. On a busy machine the caller is often preempted right at that call (the woken thread
is scheduled in its place), and the woken thread then waits for the GIL until the caller runs again:
milliseconds per request. `socket.send` releases the GIL around its system call, so a waker that is
preempted there holds nobody up.
"""

from __future__ import annotations

import contextlib
import selectors
import socket


class Wakeup:
    def __init__(self) -> None:
        self._receiver, self._sender = socket.socketpair()
        self._receiver.setblocking(False)
        self._sender.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._receiver, selectors.EVENT_READ)

    def watch(self, fd: int) -> None:
        """Make `wait` return when `fd` is readable too (the caller reads it; `wait` does not)."""
        self._selector.register(fd, selectors.EVENT_READ)

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def set(self) -> None:
        """Wake the sleeper, or make its next `wait` return at once."""
        with contextlib.suppress(BlockingIOError, OSError):  # full: wake-ups are pending anyway; closed: nobody sleeps
            self._sender.send(b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until woken or a watched fd is readable (True), or `timeout` seconds pass (False);
        pending wake-ups are consumed."""
        ready = self._selector.select(timeout)
        if not ready:
            return False
        if any(key.fileobj is self._receiver for key, _ in ready):
            with contextlib.suppress(BlockingIOError):
                self._receiver.recv(4096)
        return True

    def close(self) -> None:
        self._selector.close()
        self._receiver.close()
        self._sender.close()
