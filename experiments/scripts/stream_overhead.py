"""What a streamed request costs over /v1/classify, and how soon its first answer comes: one image,
sequential requests on one keep-alive loopback connection, /v1/classify and /v1/classify/stream
interleaved (so that drift hits them alike), no budget (the final exit). Reports the server's latency
(`latency_ms` of /v1's answer and of the stream's final event), the first exit event's `latency_ms`, and
the client's time to the first event and to the end of the stream.

    elastic serve &   # then:
    python experiments/scripts/stream_overhead.py --url http://127.0.0.1:8000 --rounds 300
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import time
from collections.abc import Iterable, Iterator

import httpx
import numpy as np
from httpx_sse import ServerSentEvent, connect_sse
from PIL import Image

log = logging.getLogger("stream_overhead")


def test_image() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small, "RGB").resize((32, 32), Image.Resampling.BILINEAR).save(buffer, "JPEG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    image = test_image()
    files = {"image": ("i.jpg", image, "image/jpeg")}
    figures: dict[str, list[float]] = {name: [] for name in
                                       ("v1 server", "v1 client", "stream server", "stream client",
                                        "first event server", "first event client")}  # fmt: skip
    with httpx.Client(base_url=args.url, timeout=30) as client:
        for n in range(args.rounds + 10):
            keep = n >= 10  # warm-up rounds left out
            for kind in ("stream", "v1") if n % 2 == 0 else ("v1", "stream"):
                started = time.perf_counter()
                if kind == "v1":
                    answer = client.post("/v1/classify", files=files).json()
                    if keep:
                        figures["v1 client"].append(1e3 * (time.perf_counter() - started))
                        figures["v1 server"].append(answer["latency_ms"])
                    continue
                with connect_sse(client, "POST", "/v1/classify/stream", files=files) as source:
                    events = list(_timed(source.iter_sse(), started))
                (first_at, first), (_, final) = events[0], events[-1]
                assert final.event == "final", final
                if keep:
                    figures["stream client"].append(1e3 * (time.perf_counter() - started))
                    figures["stream server"].append(json.loads(final.data)["latency_ms"])
                    figures["first event client"].append(first_at)
                    figures["first event server"].append(json.loads(first.data)["latency_ms"])
    for name, values in figures.items():
        log.info("%-19s p50 %6.3f ms  p90 %6.3f ms", name, statistics.median(values),
                 statistics.quantiles(values, n=10)[-1])  # fmt: skip


def _timed(events: Iterable[ServerSentEvent], started: float) -> Iterator[tuple[float, ServerSentEvent]]:
    """Each event with the client's ms from `started` to its arrival."""
    for event in events:
        yield 1e3 * (time.perf_counter() - started), event


if __name__ == "__main__":
    main()
