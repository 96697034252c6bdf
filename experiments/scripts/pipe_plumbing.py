"""The round trip of a 12 KB message (an image tensor) from an event loop to a child process and back,
for the ways the process engine could be wired, without torch: what each thread hand-off costs on this
machine. docs/performance.md quotes its output.

    python experiments/scripts/pipe_plumbing.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time

from elastic_anytime.service.engine.handoff import LoopChannel
from elastic_anytime.service.engine.wakeup import Wakeup

PAYLOAD = bytes(12288)


def child_loop_and_worker(conn) -> None:  # type: ignore[no-untyped-def]
    """As the engine's child does it: an event loop reads the pipe, a worker thread answers through it."""
    loop = asyncio.new_event_loop()
    inbox, wakeup, channel, lock = [], Wakeup(), LoopChannel(loop), threading.Lock()

    def worker() -> None:
        while True:
            wakeup.wait()
            with lock:
                jobs = inbox[:]
                inbox.clear()
            for job in jobs:
                channel.post(lambda job=job: conn.send(("answer", job[1])))
            channel.wake()

    def receive() -> None:
        try:
            message = conn.recv()
        except EOFError:
            loop.stop()
            return
        with lock:
            inbox.append(message)
        wakeup.set()

    threading.Thread(target=worker, daemon=True).start()
    loop.add_reader(conn.fileno(), receive)
    loop.run_forever()


def child_single_thread(conn) -> None:  # type: ignore[no-untyped-def]
    """The floor: one thread blocks on the pipe and answers at once."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        conn.send(("answer", message[1]))


async def round_trips(child, sender_thread: bool, count: int = 2000) -> list[float]:  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    process = context.Process(target=child, args=(there,), daemon=True)
    process.start()
    there.close()
    loop = asyncio.get_running_loop()
    pending: dict[int, asyncio.Future] = {}

    def receive() -> None:
        while here.poll():
            pending.pop(here.recv()[1]).set_result(None)

    loop.add_reader(here.fileno(), receive)
    send = here.send
    if sender_thread:  # as the engine's parent did before PipeWriter
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=lambda: [here.send(m) for m in iter(outbox.get, None)], daemon=True).start()
        send = outbox.put
    times = []
    for i in range(count):
        await asyncio.sleep(0.001)
        started = time.perf_counter()
        pending[i] = loop.create_future()
        send(("job", i, PAYLOAD))
        await pending[i]
        times.append(1e6 * (time.perf_counter() - started))
    loop.remove_reader(here.fileno())
    here.close()
    process.join(2)
    process.kill()
    return times[200:]


def main() -> None:
    sys.setswitchinterval(0.0001)  # as the server sets it
    variants = [
        ("sender thread; child loop + worker", child_loop_and_worker, True),
        ("direct write; child loop + worker", child_loop_and_worker, False),
        ("direct write; child single thread", child_single_thread, False),
    ]
    for _ in range(2):
        for name, child, sender_thread in variants:
            times = asyncio.run(round_trips(child, sender_thread))
            p90 = statistics.quantiles(times, n=10)[-1]
            print(f"{name:40s} p50 {statistics.median(times):5.0f} µs  p90 {p90:5.0f} µs")
    os._exit(0)


if __name__ == "__main__":
    main()
