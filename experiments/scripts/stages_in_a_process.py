"""The model in a child process at batch 1, quiet and with a thread in the parent that keeps the GIL
busy: one pipe round trip per call (copy in, each stage, the exit head), and one round trip for the
whole pass; against the same work in a thread of the busy process itself (what the server does).
docs/performance.md quotes its output.

    python experiments/scripts/stages_in_a_process.py
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import sys

import torch
from gil_contention import quiet_and_busy  # this folder is on sys.path when run as a script


def child(conn: multiprocessing.connection.Connection) -> None:
    from elastic_anytime.models.checkpoint import load_checkpoint
    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.service.engine.runner import ModelRunner

    torch.set_num_threads(1)
    runner = ModelRunner(load_checkpoint(default_checkpoint()), torch.device("cpu"), precision="auto")
    features = None
    while True:
        command, argument = conn.recv()
        if command == "batch":
            pixels = torch.frombuffer(bytearray(argument), dtype=torch.float32).view(*runner.input_size)
            features = runner.batch([pixels])
            conn.send(None)
        elif command == "stage":
            features = runner.stage(argument, features)
            conn.send(None)
        elif command == "exit":
            conn.send_bytes(runner.read_exit(argument, features)[0].numpy().tobytes())
        elif command == "pass":  # the whole request: copy in, every stage, the final head
            pixels = torch.frombuffer(bytearray(argument), dtype=torch.float32).view(*runner.input_size)
            features = runner.batch([pixels])
            for k in range(runner.num_exits):
                features = runner.stage(k, features)
            conn.send_bytes(runner.read_exit(runner.num_exits - 1, features)[0].numpy().tobytes())
        else:
            return


def main() -> None:
    sys.setswitchinterval(0.0001)
    context = multiprocessing.get_context("spawn")
    parent, other = context.Pipe()
    process = context.Process(target=child, args=(other,), daemon=True)
    process.start()
    pixels = torch.randn(3, 32, 32).numpy().tobytes()

    from elastic_anytime.models.checkpoint import load_checkpoint
    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.service.engine.runner import ModelRunner

    torch.set_num_threads(1)
    runner = ModelRunner(load_checkpoint(default_checkpoint()), torch.device("cpu"), precision="auto")
    tensor = torch.randn(3, 32, 32)

    def in_thread() -> None:  # the server's way: the model in a thread of the process whose GIL is busy
        features = runner.batch([tensor])
        for k in range(runner.num_exits):
            features = runner.stage(k, features)
        runner.read_exit(runner.num_exits - 1, features)

    def whole_pass() -> None:
        parent.send(("pass", pixels))
        parent.recv_bytes()

    def once() -> None:
        parent.send(("batch", pixels))
        parent.recv()
        for k in range(5):
            parent.send(("stage", k))
            parent.recv()
        parent.send(("exit", 4))
        parent.recv_bytes()

    runs = {"thread, same process  ": in_thread, "process, per call      ": once, "process, per pass      ": whole_pass}
    try:
        quiet_and_busy(runs, 300)
    finally:
        parent.send(("stop", None))


if __name__ == "__main__":
    main()
