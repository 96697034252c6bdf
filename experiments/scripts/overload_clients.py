"""Goodput under a flood of closed-loop clients (docs/performance.md, "A flood of retries"): the server and
clients of tests/e2e/test_overload.py, one step per client count given on the command line.

    .venv/bin/python experiments/scripts/overload_clients.py 32 64 128 256
"""

import asyncio
import logging
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e"))
import httpx
import test_overload as flood
from e2e_server import serve

log = logging.getLogger("overload_clients")
ENV = {"ELASTIC_QUEUE_LIMIT": "4", "ELASTIC_MAX_BATCH_SIZE": "2", "ELASTIC_WARMUP_RUNS": "1",
       "ELASTIC_CALIBRATION_RUNS": "10"}  # fmt: skip


def main(client_counts: list[int]) -> None:
    with serve(env=ENV) as server:
        model = httpx.get(server.url + "/v1/model", timeout=30).json()
        budget_ms = round(3 * model["exits"][-1]["cumulative_p95_ms_batch1"] + 10, 2)
        saturated, elapsed = asyncio.run(flood.load(server.url, flood.SATURATION_CLIENTS, 2.0, budget_ms))
        log.info("budget_ms %s, saturation %.0f/s", budget_ms, sum(r.status == 200 for r in saturated) / elapsed)
        for clients in client_counts:
            results, elapsed, _, _ = asyncio.run(flood.overload(server.url, budget_ms, clients))
            answered = [r for r in results if r.status == 200]
            in_time = sum(r.body["budget_met"] for r in answered)
            log.info("%d clients: offered %.0f/s, answered %.0f/s, in budget %.0f/s", clients,
                     len(results) / elapsed, len(answered) / elapsed, in_time / elapsed)  # fmt: skip
            refusals = Counter(r.body.get("detail", "")[:200] for r in results if r.status != 200)
            for detail, count in refusals.most_common(3):
                log.info("  %d × %s", count, detail)
            time.sleep(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main([int(arg) for arg in sys.argv[1:]] or [32, 64, 128])
