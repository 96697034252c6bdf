"""Paced load from `hey` (https://github.com/rakyll/hey, Debian package `hey`), a compiled load generator.

Why a second load generator: ours is Python on the same two cores as the server, and a user's client
is usually not. hey's workers are goroutines, each paced at `-q` requests per second, so `-c 16 -q 20`
offers 320 requests/s spread the way a pool of paced clients spreads them. hey sends the same body every
time (one image here) and reads no response body, so its `-o csv` gives each answered request's
response time and status code only. The server's own side of a hey point comes from its /metrics:
`elastic_requests_total{exit,outcome}` read before and after, the difference being this point's (the
suite sends nothing else meanwhile).
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from elastic_anytime.benchmarks.dataset import Sample
from elastic_anytime.benchmarks.loadgen import Record, build_requests, check_loopback

log = logging.getLogger(__name__)
INSTALL_HINT = "install it with `apt-get install hey` (`make bench` tries to)"
CSV_COLUMNS = ("response-time", "status-code", "offset")
NO_ROW = "no response: hey lists only the requests that got one (connection error or timeout)"


class HeyError(RuntimeError):
    """hey is missing, failed, or printed something other than its csv."""


@dataclass
class HeySpec:
    requests: int  # hey -n; hey sends (n // c) × c of them
    concurrency: int  # hey -c: workers, each with its own connection
    qps: float = 0.0  # hey -q: per worker (0: as fast as answers come); offered = concurrency × qps
    fields: dict[str, Any] = field(default_factory=dict)  # budget_ms etc., as multipart form fields
    raw: bool = False  # the image as the whole body to <url>/raw, the fields in the query string
    timeout_s: float = 10.0

    @property
    def planned(self) -> int:
        return (self.requests // self.concurrency) * self.concurrency

    @property
    def offered_rps(self) -> float | None:
        return self.concurrency * self.qps if self.qps > 0 else None

    def describe(self) -> str:
        pace = f" -q {self.qps:g}" if self.qps > 0 else ""
        return f"hey -n {self.requests} -c {self.concurrency}{pace} {self.fields or 'no budget'}"


@dataclass
class HeyRun:
    records: list[Record]
    duration_s: float
    server: dict[str, float] | None  # /metrics outcome differences (met, missed, rejected, error); None: unread
    command: list[str]
    server_refusals: dict[str, float] | None = None  # elastic_refusals_total differences by reason, where served


def find_hey() -> str | None:
    return shutil.which("hey")


def parse_csv(text: str, label: int = 0) -> tuple[list[Record], float]:
    """hey's `-o csv` output → one Record per answered request (client latency, status), and the span of the
    run in seconds (the latest `offset` + `response-time`: offset is when the request started)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not set(CSV_COLUMNS) <= set(reader.fieldnames):
        raise HeyError(f"not hey csv output: header {reader.fieldnames!r}")
    records, end = [], 0.0
    for row in reader:
        seconds, offset = float(row["response-time"]), float(row["offset"])
        records.append(Record(sample=0, label=label, status=int(row["status-code"]), client_ms=1000 * seconds))
        end = max(end, offset + seconds)
    return records, end


def counters(base_url: str) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """From /metrics: `elastic_requests_total` summed over exits, by outcome, and `elastic_refusals_total` by
    reason (a server that counts its refusals by reason; hey cannot read them from the bodies). Each is None
    where the server does not have it."""
    try:
        response = httpx.get(base_url + "/metrics", timeout=10)
    except httpx.HTTPError:
        return None, None
    if response.status_code != 200:
        return None, None
    outcomes: dict[str, float] = {}
    reasons: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "elastic_requests_total":
                outcome = sample.labels.get("outcome", "?")
                outcomes[outcome] = outcomes.get(outcome, 0.0) + sample.value
            elif sample.name == "elastic_refusals_total":
                reason = sample.labels.get("reason", "?")
                reasons[reason] = reasons.get(reason, 0.0) + sample.value
    return outcomes or None, reasons or None


def outcome_counts(base_url: str) -> dict[str, float] | None:
    """`elastic_requests_total` summed over exits, by outcome; None where the server has no such metric."""
    return counters(base_url)[0]


def _difference(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(before) | set(after))}


def command(hey: str, url: str, body: Path, content_type: str, spec: HeySpec) -> list[str]:
    args = [hey, "-n", str(spec.requests), "-c", str(spec.concurrency), "-t", f"{max(1, round(spec.timeout_s))}"]
    if spec.qps > 0:
        args += ["-q", f"{spec.qps:g}"]
    return [*args, "-m", "POST", "-T", content_type, "-D", str(body), "-o", "csv", url]


def _target(url: str, sample: Sample, spec: HeySpec, workdir: Path) -> tuple[str, Path, str]:
    """hey's URL, the body file and its content type, from the request the load generator would send."""
    (request,) = build_requests(url, [sample], spec.fields, spec.raw)
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    content_type = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:"))
    path = workdir / "body.bin"
    path.write_bytes(body)
    base = url.split("/v1/")[0] if "/v1/" in url else url.rstrip("/")
    return base + target, path, content_type


def run_hey(url: str, sample: Sample, spec: HeySpec, base_url: str | None = None) -> HeyRun:
    """One hey point against `url` (the classify endpoint), with /metrics of `base_url` read around it.

    Raises HeyError when hey is missing or fails; requests hey lists no row for count as errors."""
    check_loopback(url)
    hey = find_hey()
    if hey is None:
        raise HeyError(f"hey not found on PATH: {INSTALL_HINT}")
    if spec.requests < spec.concurrency:
        raise ValueError("hey needs at least as many requests as workers (-n ≥ -c)")
    with tempfile.TemporaryDirectory(prefix="elastic-hey-") as tmp:
        target, body, content_type = _target(url, sample, spec, Path(tmp))
        argv = command(hey, target, body, content_type, spec)
        paced_s = spec.planned / spec.offered_rps if spec.offered_rps else 0.0
        before = counters(base_url) if base_url else (None, None)
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=paced_s + spec.timeout_s + 60)
        except subprocess.TimeoutExpired:
            raise HeyError(f"hey did not finish in {paced_s + spec.timeout_s + 60:.0f}s") from None
        wall_s = time.perf_counter() - started
        after = counters(base_url) if base_url else (None, None)
    if done.returncode != 0:
        raise HeyError(f"hey exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    records, span_s = parse_csv(done.stdout, sample.label)
    missing = spec.planned - len(records)
    records += [Record(sample=0, label=sample.label, status=0, client_ms=0.0, error=NO_ROW) for _ in range(missing)]
    log.debug("%s: %d rows in %.2fs", spec.describe(), len(records) - missing, wall_s)
    outcomes, reasons = (_difference(b, a) for b, a in zip(before, after, strict=True))
    return HeyRun(records, span_s or wall_s, outcomes, argv, reasons)


def refusals_from_server(reasons: dict[str, float] | None, rejected: int) -> dict[str, int] | None:
    """The server's refusals by reason over a hey point, when they account for exactly the refusals hey saw
    (else None: the client's `http_<status>` counts stand)."""
    if not reasons:
        return None
    counted = {k: round(v) for k, v in sorted(reasons.items()) if round(v)}
    return counted if sum(counted.values()) == rejected else None


def server_hit_rate(server: dict[str, float] | None) -> float | None:
    """The server's `budget_met` share of its answers during the point, from its counters."""
    if not server:
        return None
    answered = server.get("met", 0.0) + server.get("missed", 0.0)
    return server.get("met", 0.0) / answered if answered else None


def display_command(argv: Sequence[str]) -> str:
    """The hey command line as a reader would type it: `hey`, not its path; the body file's temporary
    path and the multipart boundary (random per run) shortened, so that runs compare line by line."""
    shown = [Path(argv[0]).name if argv else "hey"]
    for arg in argv[1:]:
        if arg.endswith("/body.bin"):
            arg = "body.bin"
        elif "boundary=" in arg:
            arg = arg.split("boundary=")[0] + "boundary=…"
        shown.append(f"'{arg}'" if any(c in arg for c in " ;?&") else arg)
    return " ".join(shown)
