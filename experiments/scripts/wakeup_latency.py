"""How long this machine takes to wake a sleeping thread or process (docs/performance.md, "A slower VM"):
a one-byte ping-pong between two threads (a queue) and between two processes (pipes), after an idle gap.

    .venv/bin/python experiments/scripts/wakeup_latency.py
"""

import logging
import os
import queue
import statistics
import threading
import time

log = logging.getLogger("wakeup_latency")
GAPS_S = (0.0, 0.01, 0.2)
ROUNDS = 30


def _summary(name: str, gap_s: float, samples_us: list[float]) -> None:
    ordered = sorted(samples_us)
    median, worst = statistics.median(ordered), ordered[-1]
    log.info("%s after %g ms idle: p50 %.0f µs, max %.0f µs", name, gap_s * 1e3, median, worst)


def threads() -> None:
    there, back = queue.SimpleQueue(), queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            back.put(item)

    worker = threading.Thread(target=echo)
    worker.start()
    for gap_s in GAPS_S:
        samples = []
        for _ in range(ROUNDS):
            time.sleep(gap_s)
            started = time.perf_counter()
            there.put(1)
            back.get()
            samples.append((time.perf_counter() - started) * 1e6)
        _summary("thread ping-pong", gap_s, samples)
    there.put(None)
    worker.join()


def processes() -> None:
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    child = os.fork()
    if child == 0:
        while (byte := os.read(down_r, 1)) not in (b"", b"x"):
            os.write(up_w, byte)
        os._exit(0)
    for gap_s in GAPS_S:
        samples = []
        for _ in range(ROUNDS):
            time.sleep(gap_s)
            started = time.perf_counter()
            os.write(down_w, b"a")
            os.read(up_r, 1)
            samples.append((time.perf_counter() - started) * 1e6)
        _summary("process pipe ping-pong", gap_s, samples)
    os.write(down_w, b"x")
    os.waitpid(child, 0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    threads()
    processes()
