"""The pipe writer on real pipes: the caller writes at once while the pipe has room, is never blocked by
a full pipe (the rest follows, whole and in order, once the reader reads), and survives a reader that
has gone."""

from __future__ import annotations

import os
import threading
import time

import pytest

from elastic_anytime.service.worker.wire import PipeWriter, read_message


@pytest.fixture
def pipe() -> tuple[int, PipeWriter]:
    read_fd, write_fd = os.pipe()
    writer = PipeWriter(write_fd)
    yield read_fd, writer
    writer.close()
    os.close(read_fd)


def test_messages_are_written_at_once_while_the_pipe_has_room(pipe: tuple[int, PipeWriter]) -> None:
    read_fd, writer = pipe
    for i in range(5):
        writer.send({"kind": "job", "id": i}, b"x" * 1000)
    assert writer.direct == 5  # no thread hand-off
    assert [read_message(read_fd) for _ in range(5)] == [({"kind": "job", "id": i}, b"x" * 1000) for i in range(5)]


def test_a_full_pipe_never_blocks_the_caller_and_nothing_is_lost_or_reordered(pipe: tuple[int, PipeWriter]) -> None:
    read_fd, writer = pipe
    payload = os.urandom(12288)  # an image tensor's size
    count = 300  # over 3.5 MB: more than the pipe holds, with nobody reading yet
    started = time.monotonic()
    for i in range(count):
        writer.send({"id": i}, payload)
    assert time.monotonic() - started < 5.0  # a blocking write would hang here for good
    assert 0 < writer.direct < count  # written at once until the pipe filled, then handed to the thread
    received = [read_message(read_fd) for _ in range(count)]
    assert [header["id"] for header, _ in received] == list(range(count))
    assert all(data == payload for _, data in received)  # no message cut or interleaved with another
    writer.send({"id": count}, payload)  # drained: written at once again
    assert read_message(read_fd)[0]["id"] == count


def test_messages_from_several_threads_arrive_whole(pipe: tuple[int, PipeWriter]) -> None:
    read_fd, writer = pipe
    payload = os.urandom(50_000)  # bigger than a pipe's atomic write: halves could interleave

    def send(who: int) -> None:
        for i in range(40):
            writer.send({"who": who, "i": i}, payload)

    threads = [threading.Thread(target=send, args=(who,)) for who in range(3)]
    for thread in threads:
        thread.start()
    received = [read_message(read_fd) for _ in range(120)]
    for thread in threads:
        thread.join()
    assert all(data == payload for _, data in received)
    for who in range(3):  # each sender's messages in its own order
        assert [header["i"] for header, _ in received if header["who"] == who] == list(range(40))


def test_a_gone_reader_raises_nothing() -> None:
    read_fd, write_fd = os.pipe()
    writer = PipeWriter(write_fd)
    os.close(read_fd)
    writer.send({"id": 0}, b"x")  # EPIPE: the engine learns that the child is gone from the other pipe
    done = threading.Event()
    threading.Thread(target=lambda: (writer.send({"id": 1}, b"x" * 10**6), done.set()), daemon=True).start()
    assert done.wait(5.0)
    writer.close()


def test_read_message_raises_eof_once_the_writer_is_closed() -> None:
    read_fd, write_fd = os.pipe()
    writer = PipeWriter(write_fd)
    writer.send({"deadline": 1234.5678901234567, "budget": None})
    writer.close()
    assert read_message(read_fd) == ({"deadline": 1234.5678901234567, "budget": None}, b"")  # floats exact
    with pytest.raises(EOFError):
        read_message(read_fd)
    os.close(read_fd)
