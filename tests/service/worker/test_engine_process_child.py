"""The inference process's own loop (`child_main`), run in a thread of the test with real pipes: it
answers jobs from its inference thread, and when that thread dies it says so and ends, so that the
server fails the requests it has sent instead of waiting for them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
from collections.abc import Iterator

import pytest
import torch

from elastic_anytime.service.engine.admission import FrontEnd
from elastic_anytime.service.worker.host import child_main
from elastic_anytime.service.worker.messages import from_header
from elastic_anytime.service.worker.wire import MessageReader, PipeWriter

ENV = {"ELASTIC_TORCH_THREADS": "1", "ELASTIC_WARMUP_RUNS": "0", "ELASTIC_CALIBRATION_RUNS": "2",
       "ELASTIC_IDLE_REFRESH_MS": "0"}  # fmt: skip


FRONT_FIELDS = len(dataclasses.fields(FrontEnd))


def job(job_id: int) -> dict:
    return {"kind": "job", "id": job_id, "shape": [3, 32, 32], "deadline": None, "max_mflops": None,
            "min_confidence": None, "received": 0.0, "top_k": None, "front": [0.0] * FRONT_FIELDS}  # fmt: skip


@pytest.fixture
def child() -> Iterator[tuple[PipeWriter, object, threading.Thread]]:
    inbox, to_child = multiprocessing.Pipe(duplex=False)
    from_child, outbox = multiprocessing.Pipe(duplex=False)
    thread = threading.Thread(target=child_main, args=(inbox, outbox, ENV), daemon=True)
    thread.start()
    writer = PipeWriter(os.dup(to_child.fileno()))  # owns its copy, as in EngineProcess.start
    to_child.close()
    reader = MessageReader(os.dup(from_child.fileno()))  # what the server reads: JSON headers, no pickle
    from_child.close()
    ready = from_header(reader.recv()[0]) if reader.poll(120) else None
    assert ready is not None and ready[0] == "ready", ready
    yield writer, reader, thread
    writer.send({"kind": "stop", "timeout": 5.0})
    thread.join(30)
    writer.close()


def next_reply(reader: MessageReader, kinds: tuple[str, ...] = ("answer", "fail", "failed")) -> tuple:
    while reader.poll(30):
        message = from_header(reader.recv()[0])
        if message[0] in kinds:
            return message
    raise AssertionError("no reply from the inference process")


def test_jobs_are_answered_by_the_inference_thread(child: tuple) -> None:
    writer, reader, _ = child
    for job_id in range(3):
        writer.send(job(job_id), torch.rand(3, 32, 32).numpy().tobytes())
    answers = [next_reply(reader) for _ in range(3)]
    assert sorted(a[1] for a in answers) == [0, 1, 2]
    assert all(a[0] == "answer" and a[2].runner is None for a in answers)  # the server labels them itself


def test_a_dead_inference_thread_is_reported_and_ends_the_process(child: tuple) -> None:
    writer, reader, thread = child
    broken = job(7)
    del broken["shape"]  # a job the inference thread cannot read: it dies of it
    writer.send(broken, b"")
    failed = next_reply(reader, ("failed",))
    assert "the inference thread failed" in failed[1] and "shape" in failed[1]
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(EOFError):  # its end of the pipe is closed: the server fails what it sent
        while True:
            reader.recv()
