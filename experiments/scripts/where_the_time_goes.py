"""Where a concurrency-1 request spends its time beyond the model: the same images, full depth, through
(a) the serving runner in a loop, (b) the same loop with an idle gap between requests (as a server sees
them), (c) the engine without HTTP (the server's own ServiceState, from image bytes to answer). The
HTTP path on top is `elastic bench load --concurrency 1`. docs/performance.md quotes its output.

    python experiments/scripts/where_the_time_goes.py --data ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch

from elastic_anytime.benchmarks.dataset import load_samples
from elastic_anytime.benchmarks.serving_bound import make_decoder, serving_pass
from elastic_anytime.service.engine.policy import Budget
from elastic_anytime.service.engine.types import Job
from elastic_anytime.service.http.state import build_service
from elastic_anytime.service.settings import Settings


def p50(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.3f} ms (p90 {statistics.quantiles(values, n=10)[-1]:.3f})"


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def in_process(service, datas: list[bytes], gap_s: float, wait=time.sleep) -> list[float]:
    runner = service.runner
    decode = make_decoder(runner)
    last = runner.num_exits - 1
    times = []
    with torch.inference_mode():
        for data in datas:
            if gap_s:
                wait(gap_s)
            start = time.perf_counter()
            serving_pass(runner, [decode(data)], last)
            times.append(1e3 * (time.perf_counter() - start))
    return times


async def through_engine(service, datas: list[bytes], gap_s: float) -> list[float]:
    engine, loop, times = service.engine, asyncio.get_running_loop(), []
    for data in datas:
        if gap_s:
            await asyncio.sleep(gap_s)
        received = engine.clock()
        tensor = service.prepare(service.open(data))
        job = Job(tensor, Budget(), received, loop.create_future())
        engine.submit(job)
        await job.future
        times.append(1e3 * (engine.clock() - received))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=1.0, help="idle time between requests in (b) and (c)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # the engine in a thread of this process: (c) submits from this script's own event loop
    # (engine_round_trip.py compares it with the process engine)
    service = build_service(Settings.from_env(torch_threads=1, engine="thread"))
    datas = [s.data for s in load_samples(args.data, list(service.runner.classes), args.images)]
    service.engine.start()
    service.engine.ready.wait()
    gap = args.gap_ms / 1e3
    print(f"(a) serving runner, back to back      {p50(in_process(service, datas, 0.0))}")
    print(f"(b) serving runner, {args.gap_ms:g} ms idle between  {p50(in_process(service, datas, gap))}")
    print(f"(b) serving runner, {args.gap_ms:g} ms spinning    {p50(in_process(service, datas, gap, spin))}")
    print(f"(c) engine (no HTTP), back to back     {p50(asyncio.run(through_engine(service, datas, 0.0)))}")
    print(f"(c) engine (no HTTP), {args.gap_ms:g} ms between  {p50(asyncio.run(through_engine(service, datas, gap)))}")
    service.engine.stop()


if __name__ == "__main__":
    main()
