"""Hand results from the inference thread to an event loop without holding the GIL while waking it.

`loop.call_soon_threadsafe` wakes the loop with a system call made while the caller holds the GIL
(uvloop and asyncio alike). Under load the caller is often preempted right there, in favour of the
loop it just woke, which then cannot run Python until the caller is scheduled again: measured at
several milliseconds per answer on a busy 2-core machine, during which neither thread progresses.
Here the callbacks go into a queue and the loop is woken through a socket pair, whose `send`
releases the GIL around the system call; one wake-up serves every callback posted before it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable


class LoopChannel:
    """Callbacks posted from any thread run on `loop`, in order, after the next `wake`.

    Create (and `close`) it on the loop's own thread: it registers a reader with the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._receiver, self._sender = socket.socketpair()
        self._receiver.setblocking(False)
        self._sender.setblocking(False)
        self.closed = False
        loop.add_reader(self._receiver.fileno(), self._drain)

    def post(self, callback: Callable[[], None]) -> None:
        """Queue `callback` (thread-safe); it runs after the next `wake`."""
        self._pending.append(callback)

    def wake(self) -> None:
        """Make the loop run everything posted so far (thread-safe; the GIL is released while sending)."""
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway; closed: drained
            self._sender.send(b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._receiver.recv(4096):
                pass
        while self._pending:
            self._pending.popleft()()

    def close(self) -> None:
        """On the loop's thread: run what is still queued, unregister, close the sockets."""
        if self.closed:
            return
        self.closed = True
        self._drain()
        with contextlib.suppress(Exception):  # the loop may be closing
            self.loop.remove_reader(self._receiver.fileno())
        self._receiver.close()
        self._sender.close()
