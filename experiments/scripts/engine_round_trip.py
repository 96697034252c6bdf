"""One request at a time through the engine without HTTP, thread against process engine (alternating,
two rounds each): where its time goes. prepare = header + decode + normalise; engine = submit until
the engine stamps its answer (for the process engine: the pipe there, the queue, the model); hand-off =
from that stamp until the awaiting coroutine has the answer (a thread wake-up, or the pipe back and
the event loop). docs/performance.md quotes its output.

    python experiments/scripts/engine_round_trip.py --data ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import torch

from elastic_anytime.benchmarks.dataset import load_samples
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Job
from elastic_anytime.service.http.state import build_service
from elastic_anytime.service.settings import Settings


async def serve_one_by_one(kind: str, datas: list[bytes], gap_s: float) -> list[tuple[float, float, float, float]]:
    service = build_service(Settings.from_env({"ELASTIC_ENGINE": kind, "ELASTIC_TORCH_THREADS": "1"}))
    engine, loop = service.engine, asyncio.get_running_loop()
    engine.start()
    while not engine.ready.is_set():
        await asyncio.sleep(0.05)
    times = []
    for _ in range(2):  # the first pass warms up
        times.clear()
        for data in datas:
            await asyncio.sleep(gap_s)  # as a server sees them: an idle gap between requests
            received = engine.clock()
            tensor = service.prepare(service.open(data))
            submitted = engine.clock()
            job = Job(tensor, Budget(), received, loop.create_future())
            engine.submit(job)
            answer = await job.future
            done = engine.clock()
            stamped = received + answer.latency_s
            times.append((done - received, submitted - received, stamped - submitted, done - stamped))
    await loop.run_in_executor(None, engine.stop)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    datas = [s.data for s in load_samples(args.data, classes, args.images)]
    for kind in ["thread", "process"] * 2:
        times = asyncio.run(serve_one_by_one(kind, datas, args.gap_ms / 1e3))
        p50s = [1e3 * statistics.median(column) for column in zip(*times, strict=True)]
        print(f"{kind:8s} p50 ms: total {p50s[0]:.3f} = prepare {p50s[1]:.3f} + engine {p50s[2]:.3f} "
              f"+ hand-off {p50s[3]:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
