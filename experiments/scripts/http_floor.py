"""The floor that uvicorn sets at concurrency 1 on this machine, against the allowance of the c=1 target
(server p50 ≤ 1.15× the in-process bound): the same blocking-socket client, one request at a time,
alternating between
  bare     uvicorn serving a bare ASGI app that reads the multipart body and answers a fixed JSON
           body of the size Elastic answers (no FastAPI, no decode, no model),
  healthz  Elastic's GET /healthz (uvicorn + FastAPI, no body),
  classify Elastic's POST /v1/classify (the whole path, full depth).
docs/performance.md quotes its output.

    python experiments/scripts/http_floor.py --data ../shared/data/cifar10 --requests 2000
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from elastic_anytime.benchmarks.http1 import build_request  # noqa: E402
from elastic_anytime.benchmarks.loadgen import multipart_body  # noqa: E402
from elastic_anytime.benchmarks.servers import free_port, start  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_c1 import BOUNDARY, Connection, images_of_test_split, serve  # noqa: E402

# what the bare app answers: as long as a typical Elastic answer, with a latency_ms for Connection
ANSWER = (
    b'{"label":"airplane","class_id":0,"confidence":0.9,"exit":4,"exit_name":"layer3.res","num_exits":5,'
    b'"mflops":190.5,"latency_ms":0.0,"queue_ms":0.02,"budget_ms":null,"budget_mflops":null,'
    b'"budget_met":true,"stopped_by":"final","top_k":null}'
)

BARE_APP = f"""
ANSWER = {ANSWER!r}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as any server must
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": ANSWER}})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    samples = images_of_test_split(args.data)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    times: dict[str, list[float]] = {"bare": [], "healthz": [], "classify": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as running:
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        bare_port, elastic_port = free_port(), free_port()
        bare = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--no-access-log",
                "--log-level", "warning"]  # fmt: skip
        running.enter_context(start("bare", bare, bare_port, "/", Path(tmp), {}, cwd=Path(tmp)))
        running.enter_context(serve(str(ROOT), elastic_port, Path(tmp)))
        bodies = [multipart_body(s, {}, BOUNDARY) for s in samples]
        urls = {"bare": f"http://127.0.0.1:{bare_port}/", "classify": f"http://127.0.0.1:{elastic_port}/v1/classify"}
        requests = {name: [build_request(url, b, content_type) for b in bodies] for name, url in urls.items()}
        healthz = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{elastic_port}\r\n\r\n".encode()
        connections = {"bare": Connection(bare_port), "healthz": Connection(elastic_port),
                       "classify": Connection(elastic_port)}  # fmt: skip
        order = list(times)
        for n in range(args.requests):
            for name in order[n % 3 :] + order[: n % 3]:  # rotate who goes first
                request = healthz if name == "healthz" else requests[name][n % len(samples)]
                times[name].append(connections[name].exchange(request, need_latency=name != "healthz")[0])
    for name, values in times.items():
        values.sort()
        print(f"{name:9s} p50 {statistics.median(values):.3f} ms, p90 {values[int(0.9 * len(values))]:.3f} ms")


if __name__ == "__main__":
    main()
