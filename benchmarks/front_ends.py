"""The "front ends" phase of the suite: `elastic serve --workers W` for a few W, each measured for memory
(the RSS of every process of the server, summed) and for throughput through its front ends.

With W ≥ 2 the server is a supervisor, one engine process and W front ends (service.worker.supervisor); with
W = 1 it is one front end and its own inference process. The engine is the process that maps torch."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from elastic_anytime.benchmarks import servers

log = logging.getLogger(__name__)

WORKERS = {"smoke": (1, 2), "small": (1, 2), "full": (1, 2, 8)}
SATURATION_CONCURRENCY = 16
BUDGETED_CONCURRENCY = 8
BUDGET_MS = 10.0
FRONT_END_RSS_MAX_MB = 150.0
EIGHT_WORKERS_RSS_MAX_MB = 2500.0


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        todo.extend(int(line) for line in out.split())
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(root: int, workers: int) -> dict[str, Any]:
    """RSS in MB of the server's processes by role: the engine (maps torch), the front ends, the rest."""
    roles: dict[str, list[float]] = {"engine": [], "front_ends": [], "other": []}
    for pid in process_tree(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            size = rss_mb(pid)
            torch = "libtorch" in Path(f"/proc/{pid}/maps").read_text()
        except OSError:  # it ended meanwhile
            continue
        if torch:
            roles["engine"].append(size)
        elif b"resource_tracker" in command or (workers > 1 and pid == root):
            roles["other"].append(size)  # the supervisor, multiprocessing's resource tracker
        else:
            roles["front_ends"].append(size)
    return {
        "total_mb": sum(sum(v) for v in roles.values()),
        "engine_mb": sum(roles["engine"]),
        "front_end_max_mb": max(roles["front_ends"], default=None),
        "front_ends": len(roles["front_ends"]),
        "other_mb": sum(roles["other"]),
    }


def _all_front_ends_ready(base_url: str, workers: int, timeout_s: float = 120.0) -> None:
    """Each front end warms up on its own: wait until many fresh connections in a row find one ready."""
    deadline, in_a_row = time.monotonic() + timeout_s, 0
    while in_a_row < 8 * workers and time.monotonic() < deadline:
        try:
            ok = httpx.get(base_url + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        in_a_row = in_a_row + 1 if ok else 0
        if not ok:
            time.sleep(0.2)


def run_front_ends(cfg: Any, bench: Any, env: dict[str, str]) -> list[dict[str, Any]]:
    """One point per worker count: memory at rest, then saturation at full depth and a budgeted closed loop."""
    points = []
    for workers in WORKERS.get(cfg.size.name, (1, 2)):
        port = servers.free_port()
        command = [*servers.elastic_command(cfg.checkpoint, port), "--workers", str(workers)]
        command += ["--no-access-log", "--log-level", "warning"]
        name = f"elastic-workers-{workers}"
        with servers.start(name, command, port, "/readyz", cfg.out_dir / "logs", env=env) as server:
            _all_front_ends_ready(server.base_url, workers)
            url = server.classify_url
            bench.warm(url)
            rest = memory(server.process.pid, workers)
            requests = cfg.size.saturation_requests
            saturation, _ = bench.point(url, requests=requests, concurrency=SATURATION_CONCURRENCY)
            budgeted, _ = bench.point(
                url, requests=requests, concurrency=BUDGETED_CONCURRENCY, fields={"budget_ms": BUDGET_MS}
            )
            loaded = memory(server.process.pid, workers)
        log.info("--workers %d: %.0f MB at rest, %.0f MB loaded", workers, rest["total_mb"], loaded["total_mb"])
        points.append({"workers": workers, "memory": rest, "memory_loaded": loaded, "saturation": saturation,
                       "budgeted": budgeted})  # fmt: skip
    return points


def front_end_targets(points: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Issue 17's CPU memory targets, from the phase's points (none when the phase did not run)."""
    if not points:
        return []
    fronts = [p["memory"]["front_end_max_mb"] for p in points if p["memory"]["front_end_max_mb"] is not None]
    biggest = max(fronts, default=None)
    out = [
        {
            "name": "RSS of one HTTP front end (--workers ≥ 1, at rest)",
            "goal": f"≤ {FRONT_END_RSS_MAX_MB:.0f} MB",
            "value": biggest,
            "met": None if biggest is None else biggest <= FRONT_END_RSS_MAX_MB,
            "measured": "-" if biggest is None else f"{biggest:.0f} MB",
            "detail": ", ".join(f"--workers {p['workers']}: {_mb(p['memory']['front_end_max_mb'])}" for p in points),
        }
    ]
    eight = next((p for p in points if p["workers"] == 8), None)
    if eight is not None:
        rest, loaded = eight["memory"]["total_mb"], eight["memory_loaded"]["total_mb"]
        total = max(rest, loaded)
        out.append(
            {
                "name": "RSS of every process of `elastic serve --workers 8`, summed",
                "goal": f"≤ {EIGHT_WORKERS_RSS_MAX_MB / 1000:.1f} GB",
                "value": total,
                "met": total <= EIGHT_WORKERS_RSS_MAX_MB,
                "measured": f"{total / 1000:.2f} GB",
                "detail": f"at rest {_mb(rest)}, after load {_mb(loaded)}",
            }
        )
    return out


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def front_ends_section(results: dict[str, Any]) -> str:
    """The "Front ends sharing one engine" section of BENCHMARKS.md ('' when the phase did not run)."""
    from elastic_anytime.benchmarks.markdown import ms, pct, table

    points = results["elastic"].get("front_ends")
    if not points:
        return ""
    rows = []
    for p in points:
        mem, sat, bud = p["memory"], p["saturation"], p["budgeted"]
        rows.append([
            p["workers"], _mb(mem["total_mb"]), _mb(mem["engine_mb"]), _mb(mem["front_end_max_mb"]),
            _mb(mem["other_mb"]), _mb(p["memory_loaded"]["total_mb"]),
            f"{sat['throughput_rps'] or 0:.0f}", ms(sat["client_ms"]["p50"]),
            f"{bud['goodput_rps'] or 0:.0f}", pct(bud["client_hit_rate_sent"]), bud["rejected"],
        ])  # fmt: skip
    header = ["--workers", "RSS total", "engine", "front end (max)", "supervisor + tracker", "RSS after load",
              f"full depth c={SATURATION_CONCURRENCY} /s", "p50 ms",
              f"{BUDGET_MS:g} ms c={BUDGETED_CONCURRENCY}: goodput/s", "in budget (client)",
              "refused"]  # fmt: skip
    return f"""## Front ends sharing one engine (`--workers`)

`elastic serve --workers W`: with W ≥ 2 a supervisor, one engine process (the model, the batcher) and W
HTTP front ends without torch (service.worker.supervisor); with W = 1 one front end and its own inference
process. RSS summed over every process of the server, at rest after a warm-up and again after the two
points; then full depth at concurrency {SATURATION_CONCURRENCY} and a {BUDGET_MS:g} ms budget at concurrency
{BUDGETED_CONCURRENCY}, through the front ends (on this machine's cores they compete with the engine).

{table(header, rows)}

"""
