"""Messages down a pipe from an event loop: written at once when that cannot block, else by a thread.

Why not always a thread: handing each message to a writer thread costs a thread wake-up and a GIL
hand-off per request (measured here: about 60 µs of a 0.28 ms round trip to the inference process, at
concurrency 1), and under load every such hand-off is one more contender for the GIL. Why not always
at once: a full pipe (a busy child) would block the event loop and every request on it. So the caller
tries a non-blocking write; what does not fit (all of it, or the rest of a message) goes to the thread,
which writes it, and everything sent after it, in order.

A message is a JSON header (options, numbers) and a binary payload (an image tensor's bytes), each
behind its length; `read_message` reads one. The same format goes both ways: jobs down, and answers up
(`MessageWriter`, `MessageReader`; service.worker.messages says what each kind carries). No pickle:
neither side trusts what it reads to be more than data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import select
import struct
import threading
from typing import Any

LENGTHS = struct.Struct("!II")  # header bytes, payload bytes
PIPE_CAPACITY = 1 << 20  # Linux's default limit for an unprivileged process (/proc/sys/fs/pipe-max-size)


def grow_pipe(fd: int, capacity: int = PIPE_CAPACITY) -> None:
    """Ask for a bigger pipe (Linux): more room for bursts before anyone waits."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, capacity)


def encode(header: Any, payload: bytes = b"") -> bytes:
    """One message: the lengths, the JSON header, the payload."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return LENGTHS.pack(len(encoded), len(payload)) + encoded + payload


def read_message(fd: int) -> tuple[Any, bytes]:
    """Read one message written by a `PipeWriter` (blocking): (header, payload). EOFError once the writer
    has closed."""
    header_size, payload_size = LENGTHS.unpack(_read_exactly(fd, LENGTHS.size))
    header = json.loads(_read_exactly(fd, header_size))
    return header, _read_exactly(fd, payload_size)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the pipe was closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class PipeWriter:
    """Send messages down the pipe `fd` (its write end) without blocking the caller."""

    def __init__(self, fd: int, name: str = "elastic-pipe-writer") -> None:
        self.fd = fd
        grow_pipe(fd)
        os.set_blocking(fd, False)  # for good: the caller's writes must never wait; the thread polls instead
        self._writable = select.poll()
        self._writable.register(fd, select.POLLOUT)
        self._write_lock = threading.Lock()  # one writer at a time: messages never interleave
        self._count_lock = threading.Lock()  # guards _queued; never held across I/O
        self._queued = 0  # handed to the thread and not fully written yet
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.direct = 0  # messages the caller wrote whole itself (for tests and experiments)
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def send(self, header: Any, payload: bytes = b"") -> None:
        """Write the message (`header`: anything JSON can hold) now as far as the pipe takes it without
        blocking; the thread writes the rest."""
        data = encode(header, payload)
        if self._write_lock.acquire(blocking=False):
            try:
                with self._count_lock:
                    behind = self._queued > 0
                if not behind:  # nothing queued or half written: this message may go first
                    written = self._write_some(data)
                    if written is None or written == len(data):
                        self.direct += written is not None
                        return
                    data = data[written:]  # its rest goes to the thread, first in line
                    self._hand_over(data)
                    return
            finally:
                self._write_lock.release()
        self._hand_over(data)

    def close(self) -> None:
        """Stop the thread once it has written what is queued, then close the pipe."""
        self._queue.put(None)

    def _hand_over(self, data: bytes) -> None:
        with self._count_lock:
            self._queued += 1
        self._queue.put(data)

    def _write_some(self, data: bytes | memoryview) -> int | None:
        """Write lock held: as much of `data` as fits now; None once the reader is gone."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError:  # the reader is gone: whoever reads the other pipe sees it end
            return None

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            with self._write_lock:
                view = memoryview(data)
                while view:
                    written = self._write_some(view)
                    if written is None:  # the reader is gone; keep counting so that callers never wait on us
                        break
                    if not written:  # a full pipe waits here, not the event loop
                        self._writable.poll()
                    view = view[written:]
                with self._count_lock:
                    self._queued -= 1
        with contextlib.suppress(OSError):
            os.close(self.fd)


class MessageWriter:
    """Whole messages written with blocking writes, one at a time: the engine process's answer pipe, shared
    by its inference thread and its main thread. A full pipe makes the writer wait, as the front end reads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, True)
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.fd

    def send(self, header: Any, payload: bytes = b"") -> None:
        data = memoryview(encode(header, payload))
        with self._lock:
            while data:
                data = data[os.write(self.fd, data) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class MessageReader:
    """The front end's end of the answer pipe: whether a message has begun, and the whole message (blocking:
    the writer writes each message at once)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._readable = select.poll()
        self._readable.register(fd, select.POLLIN)

    def fileno(self) -> int:
        return self.fd

    def poll(self, timeout_s: float = 0.0) -> bool:
        """A message (or the end of the pipe) is there to read."""
        return bool(self._readable.poll(timeout_s * 1e3))

    def recv(self) -> tuple[Any, bytes]:
        return read_message(self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
