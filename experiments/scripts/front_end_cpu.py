"""CPU time each process of `elastic serve` spends per request, at full depth under a closed loop from `hey`
(compiled, so the load generator takes little of the two cores): the front end's cost per request is what
bounds saturation on a CPU node and what the GPU node's target counts (issue 17: about 1 ms or less).
Reads utime + stime of the server and of its inference process from /proc before and after each round;
one fresh server, rounds of `--requests` at `-c 8`; `--code DIR` serves another checkout. docs/performance.md
quotes its output.

    .venv/bin/python experiments/scripts/front_end_cpu.py --data ../shared/data/cifar10 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from elastic_anytime.benchmarks.dataset import load_samples  # noqa: E402
from elastic_anytime.benchmarks.loadgen import multipart_body  # noqa: E402
from elastic_anytime.benchmarks.servers import elastic_command, free_port, start  # noqa: E402

log = logging.getLogger("front_end_cpu")
CHECKPOINT = ROOT / "models" / "pretrained" / "resnet9-cifar10"
BOUNDARY = "frontendcpu"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", help="serve another checkout (its root, with docs/performance.md's links)")
    args = parser.parse_args()
    folder = Path(args.data) / "test"
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    sample = load_samples(args.data, classes, 1)[0]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(multipart_body(sample, {}, BOUNDARY))
        command = [*elastic_command(CHECKPOINT, port), "--no-access-log", "--log-level", "warning"]
        # `python -m` puts its working directory first on sys.path: run another checkout from its root
        code = Path(args.code or ROOT)
        with start("elastic", command, port, "/readyz", Path(tmp), env={"PYTHONPATH": str(code)}, cwd=code) as server:
            pid = server.process.pid
            engine = [p for p in children(pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
            for round_ in range(args.rounds):
                before = cpu_seconds(pid), [cpu_seconds(p) for p in engine]
                hey = subprocess.run(
                    ["hey", "-n", str(args.requests), "-c", str(args.concurrency), "-m", "POST",
                     "-T", f"multipart/form-data; boundary={BOUNDARY}", "-D", str(body),
                     f"http://127.0.0.1:{port}/v1/classify"],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                front = cpu_seconds(pid) - before[0]
                inference = sum(cpu_seconds(p) for p in engine) - sum(before[1])
                rate = next(line for line in hey.stdout.splitlines() if "Requests/sec" in line).split()[-1]
                log.info(
                    "round %d: %s requests/s; CPU per request: front end %.0f µs, inference process %.0f µs",
                    round_ + 1, rate, 1e6 * front / args.requests, 1e6 * inference / args.requests,
                )  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
