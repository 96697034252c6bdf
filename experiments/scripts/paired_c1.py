"""Concurrency 1, two servers side by side: one client sends each image to both in turn (alternating
which goes first), so that both see the same moment of this noisy machine, and reports each one's
p50 and the median of the per-pair differences (docs/performance.md quotes it).

    git worktree add -f /tmp/base <commit>
    python experiments/scripts/paired_c1.py --data ../shared/data/cifar10 /tmp/base . --requests 1000
    python experiments/scripts/paired_c1.py --data ../shared/data/cifar10 .:ELASTIC_ENGINE=thread .

Each SERVER is a source tree (served with this checkout's Python) and optional NAME=VALUE settings
after colons. The client is a blocking socket: no event loop of its own in the measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from elastic_anytime.benchmarks.dataset import load_samples  # noqa: E402
from elastic_anytime.benchmarks.http1 import build_request  # noqa: E402
from elastic_anytime.benchmarks.loadgen import multipart_body  # noqa: E402
from elastic_anytime.benchmarks.servers import ServerProcess, elastic_command, free_port, start  # noqa: E402

BOUNDARY = "pairedc1boundary"
CHECKPOINT = ROOT / "models/pretrained/resnet9-cifar10"


def serve(spec: str, port: int, log_dir: Path) -> ServerProcess:
    """SERVER is TREE[:NAME=VALUE...]: this checkout's Python serving the code of TREE."""
    tree, *settings = spec.split(":")
    env = {"ELASTIC_TORCH_THREADS": "1", **dict(s.split("=", 1) for s in settings)}
    command = [*elastic_command(CHECKPOINT, port), "--no-access-log"]
    return start(f"server-{port}", command, port, "/readyz", log_dir, env, cwd=Path(tree))


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def exchange(self, request: bytes, need_latency: bool = True) -> tuple[float, float]:
        """(client ms, the answer's latency_ms; NaN when not asked for)."""
        started = time.perf_counter()
        self.sock.sendall(request)
        self.file.readline()
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = self.file.read(length)
        elapsed = (time.perf_counter() - started) * 1e3
        return elapsed, json.loads(body)["latency_ms"] if need_latency else float("nan")


def images_of_test_split(data: str, count: int = 200) -> list:
    """The first `count` test images of the ImageFolder at `data`, with their labels."""
    classes = sorted(p.name for p in (Path(data) / "test").iterdir() if p.is_dir())
    return load_samples(data, classes, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs=2, metavar="SERVER")
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    samples = images_of_test_split(args.data)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    client: list[list[float]] = [[], []]
    server: list[list[float]] = [[], []]
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as running:
        ports = [free_port(), free_port()]
        for spec, port in zip(args.servers, ports, strict=True):
            running.enter_context(serve(spec, port, Path(logs)))
        connections = [Connection(port) for port in ports]
        requests = [[build_request(f"http://127.0.0.1:{p}/v1/classify", multipart_body(s, {}, BOUNDARY), content_type)
                     for s in samples] for p in ports]  # fmt: skip
        for n in range(args.requests):
            for side in (0, 1) if n % 2 == 0 else (1, 0):
                c, s = connections[side].exchange(requests[side][n % len(samples)])
                client[side].append(c)
                server[side].append(s)
    for side, spec in enumerate(args.servers):
        print(f"{spec}: client p50 {statistics.median(client[side]):.3f} ms, server p50 "
              f"{statistics.median(server[side]):.3f} ms")  # fmt: skip
    client_diff = statistics.median(b - a for a, b in zip(client[0], client[1], strict=True))
    server_diff = statistics.median(b - a for a, b in zip(server[0], server[1], strict=True))
    print(f"second minus first, median of pairs: client {client_diff:+.3f} ms, server {server_diff:+.3f} ms")


if __name__ == "__main__":
    main()
