"""How long a full garbage collection stalls each process of `elastic serve` once it serves: every process
gets a probe (a sitecustomize module on PYTHONPATH) that times `gc.collect()` every 3 s from a thread of its
own and appends the time and the frozen-object count to a file per process. A closed loop of 4 clients
keeps the server busy meanwhile. `--code DIR` serves another checkout (its root, with the elastic_anytime
links of docs/performance.md's A/B recipe). docs/performance.md ("Pauses of the garbage collector") quotes
its output.

    .venv/bin/python experiments/scripts/gc_pauses.py --data ../shared/data/cifar10 [--code /tmp/old]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from elastic_anytime.benchmarks.servers import elastic_command, free_port, start  # noqa: E402

log = logging.getLogger("gc_pauses")
CHECKPOINT = ROOT / "models" / "pretrained" / "resnet9-cifar10"
PROBE = """
import gc, os, threading, time
def _probe():
    while True:
        time.sleep(3)
        started = time.perf_counter()
        gc.collect()
        spent = time.perf_counter() - started
        with open(os.path.join({out!r}, f"{{os.getpid()}}.txt"), "a") as f:
            f.write(f"{{1e3 * spent:.3f}} {{gc.get_freeze_count()}}\\n")
threading.Thread(target=_probe, daemon=True).start()
"""


def role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return "gone"
    return "inference process" if "spawn_main" in command else "front end" if "serve" in command else "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--code", help="serve this checkout instead (prepended to PYTHONPATH)")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir, out = Path(tmp) / "probe", Path(tmp) / "out"
        probe_dir.mkdir()
        out.mkdir()
        (probe_dir / "sitecustomize.py").write_text(PROBE.format(out=str(out)))
        path = [str(probe_dir), *([args.code] if args.code else []), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
        command = [*elastic_command(CHECKPOINT, port), "--no-access-log", "--log-level", "warning"]
        # `python -m` puts its working directory first on sys.path: run another checkout from its root
        with start("elastic", command, port, "/readyz", Path(tmp), env=env, cwd=Path(args.code or ROOT)):
            for report in out.glob("*.txt"):  # what the probe saw while the server started
                report.unlink()
            load = subprocess.Popen(
                [sys.executable, "-m", "elastic_anytime.elastic_cli.main", "bench", "load", "--url",
                 f"http://127.0.0.1:{port}/v1/classify", "--data", args.data, "--mode", "closed",
                 "--concurrency", "4", "--budgets", "none", "--requests", "100000",
                 "--time-limit", str(args.seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(args.seconds)
            load.terminate()
            load.wait()
            for report in sorted(out.glob("*.txt")):
                pid = int(report.stem)
                rows = [line.split() for line in report.read_text().splitlines()]
                pauses = ", ".join(f"{float(ms):.2f}" for ms, _ in rows)
                log.info("%s (pid %d): full collections took %s ms; %s objects frozen", role(pid), pid, pauses,
                         rows[-1][1] if rows else "?")  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
