"""The traffic-shape numbers: refusals by reason, inside the budget at the server and at the client, the
client − server gap, goodput, refusal latency, and hey's csv (a real recording) turned into records."""

from __future__ import annotations

from pathlib import Path

import pytest

from elastic_anytime.benchmarks.hey import (
    HeyError,
    HeySpec,
    _difference,
    _target,
    command,
    parse_csv,
    refusals_from_server,
    server_hit_rate,
)
from elastic_anytime.benchmarks.loadgen import Record
from elastic_anytime.benchmarks.stats import goodput, latency_gap, refusals_by_reason, summarize

RECORDED = Path(__file__).resolve().parent / "recorded"


def answer(client_ms: float, server_ms: float, met: bool) -> Record:
    return Record(sample=0, label=1, status=200, client_ms=client_ms, class_id=1, exit=0, latency_ms=server_ms,
                  budget_met=met)  # fmt: skip


def refusal(status: int, code: str | None, client_ms: float = 1.0) -> Record:
    return Record(sample=0, label=1, status=status, client_ms=client_ms, error_code=code)


def test_refusals_are_counted_by_reason_and_failures_are_not_refusals() -> None:
    records = [
        refusal(503, "overloaded"),
        refusal(503, "overloaded"),
        refusal(503, "queue_full"),
        refusal(503, "unavailable"),
        refusal(422, "budget_too_small"),
        refusal(503, None),  # no body read (hey): the status stands for the reason
        refusal(422, "invalid_field"),  # a bad request, not a refusal
        refusal(500, "inference_failed"),
        answer(3.0, 2.0, True),
    ]
    assert refusals_by_reason(records) == {
        "budget_too_small": 1, "http_503": 1, "overloaded": 2, "queue_full": 1, "unavailable": 1,
    }  # fmt: skip
    s = summarize(records, duration_s=1.0, budget_ms=5.0)
    assert (s["ok"], s["rejected"], s["errors"]) == (1, 6, 2)
    assert sum(s["refusals"].values()) == s["rejected"]


def test_inside_the_budget_at_the_server_and_at_the_client_differ() -> None:
    # the server stamps 4.5 ms (met), the client sees 6 ms: inside for the server, late for the caller
    records = [answer(3.0, 2.0, True), answer(6.0, 4.5, True), answer(7.0, 6.0, False), refusal(503, "overloaded")]
    s = summarize(records, duration_s=2.0, budget_ms=5.0)
    assert s["server_hit_rate"] == pytest.approx(2 / 3)
    assert s["client_hit_rate"] == pytest.approx(1 / 3)
    assert s["client_hit_rate_sent"] == pytest.approx(1 / 4)
    assert s["goodput_rps"] == pytest.approx(0.5)  # one answer inside at the client in 2 s


def test_goodput_needs_a_budget_and_a_duration() -> None:
    records = [answer(3.0, 2.0, True), answer(4.0, 3.0, True)]
    assert goodput(records, 0.5, 3.5) == pytest.approx(2.0)
    assert goodput(records, 0.5, None) is None and goodput(records, 0.0, 5.0) is None
    assert summarize(records, 1.0)["goodput_rps"] is None


def test_gap_is_client_minus_server_per_answer() -> None:
    records = [answer(3.0 + k, 2.0, True) for k in range(100)] + [refusal(503, "overloaded", 50.0)]
    gap = latency_gap(records)
    assert gap["p50"] == pytest.approx(50.5) and gap["p99"] == pytest.approx(99.01)
    hey_like = [Record(sample=0, label=0, status=200, client_ms=3.0)]  # no server latency: no gap
    assert latency_gap(hey_like) == {"p50": None, "p99": None}


def test_refusal_latency_is_over_refusals_only() -> None:
    records = [answer(30.0, 2.0, True), refusal(503, "overloaded", 1.0), refusal(422, "budget_too_small", 3.0)]
    s = summarize(records, 1.0, 5.0)
    assert s["refused_client_ms"]["p50"] == pytest.approx(2.0)
    assert s["refused_client_ms"]["p99"] == pytest.approx(2.98)
    assert summarize([answer(3.0, 2.0, True)], 1.0, 5.0)["refused_client_ms"] == {"p50": None, "p99": None}


def test_real_hey_csv_is_parsed_into_records() -> None:
    # recorded: hey -n 400 -c 64 -m POST -T image/jpeg -D img.jpg -o csv '<server>/v1/classify/raw?budget_ms=4'
    records, span_s = parse_csv((RECORDED / "hey_overload.csv").read_text(), label=2)
    assert len(records) == 384 == HeySpec(400, 64).planned  # hey sends (n // c) × c
    assert sum(r.status == 200 for r in records) == 14 and sum(r.status == 503 for r in records) == 370
    assert all(r.label == 2 and r.class_id is None for r in records)
    assert records[0].client_ms == pytest.approx(7.4) and records[0].status == 503
    assert span_s == pytest.approx(0.2064 + 0.0032)  # the last request: offset + response time
    s = summarize(records, span_s, 4.0)
    assert s["refusals"] == {"http_503": 370} and s["rejected"] == 370 and s["ok"] == 14
    assert s["server_hit_rate"] is None  # hey reads no body: the server's side comes from /metrics
    assert s["client_hit_rate_sent"] == pytest.approx(
        sum(r.status == 200 and r.client_ms <= 4.0 for r in records) / 384
    )
    assert s["refused_client_ms"]["p99"] > 100  # refusals under that overload took long: the number to watch


def test_not_hey_output_is_an_error() -> None:
    with pytest.raises(HeyError, match="not hey csv"):
        parse_csv("Summary:\n  Total: 0.2 secs\n")


def test_the_server_side_of_a_hey_point_is_the_counter_difference() -> None:
    before = {"met": 10.0, "missed": 1.0, "rejected": 0.0, "error": 0.0}
    after = {"met": 107.0, "missed": 4.0, "rejected": 5.0, "error": 0.0}
    server = _difference(before, after)
    assert server == {"error": 0.0, "met": 97.0, "missed": 3.0, "rejected": 5.0}
    assert server_hit_rate(server) == pytest.approx(0.97)
    assert _difference(None, after) is None and server_hit_rate(None) is None
    assert server_hit_rate({"rejected": 3.0}) is None  # nothing answered


def test_hey_is_given_the_request_the_load_generator_would_send(tmp_path: Path) -> None:
    from elastic_anytime.benchmarks.dataset import Sample

    sample = Sample(b"\xff\xd8jpeg", 1, "a.jpg")
    url = "http://127.0.0.1:9/v1/classify"
    target, body, content_type = _target(url, sample, HeySpec(64, 16, 20.0, {"budget_ms": 30}), tmp_path)
    assert target == url and content_type.startswith("multipart/form-data; boundary=")
    data = body.read_bytes()
    assert b'name="budget_ms"\r\n\r\n30\r\n' in data and b"\xff\xd8jpeg" in data
    raw_spec = HeySpec(64, 16, 20.0, {"budget_ms": 30}, raw=True)
    target, body, content_type = _target(url, sample, raw_spec, tmp_path)
    assert target == "http://127.0.0.1:9/v1/classify/raw?budget_ms=30" and content_type == "image/jpeg"
    assert body.read_bytes() == b"\xff\xd8jpeg"
    argv = command("hey", target, body, content_type, raw_spec)
    assert argv[:9] == ["hey", "-n", "64", "-c", "16", "-t", "10", "-q", "20"]
    assert argv[-3:] == ["-o", "csv", target] and raw_spec.offered_rps == 320


def test_the_suite_skips_the_hey_phase_with_a_note_when_hey_is_missing_or_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from elastic_anytime.benchmarks import traffic
    from elastic_anytime.benchmarks.dataset import Sample
    from elastic_anytime.benchmarks.sizes import SIZES

    sample, shapes = Sample(b"\xff\xd8", 0, "a.jpg"), SIZES["small"].shapes
    monkeypatch.setattr(traffic, "find_hey", lambda: None)
    missing = traffic._hey_points("http://127.0.0.1:9/v1/classify", "http://127.0.0.1:9", sample, shapes)
    assert missing["points"] == [] and "not installed" in missing["skipped"]

    def failing(*args: object, **kwargs: object) -> dict:
        raise HeyError("hey exited with 2: bad flag")

    monkeypatch.setattr(traffic, "find_hey", lambda: "/usr/bin/hey")
    monkeypatch.setattr(traffic, "hey_point", failing)
    failed = traffic._hey_points("http://127.0.0.1:9/v1/classify", "http://127.0.0.1:9", sample, shapes)
    assert failed == {"points": [], "skipped": "hey failed, its remaining points skipped: hey exited with 2: bad flag"}


def test_hey_refusals_take_the_servers_reasons_when_they_add_up() -> None:
    reasons = _difference({"overloaded": 3.0, "queue_full": 0.0}, {"overloaded": 40.0, "queue_full": 1.0})
    assert refusals_from_server(reasons, 38) == {"overloaded": 37, "queue_full": 1}
    assert refusals_from_server(reasons, 39) is None  # something else refused too: keep hey's status counts
    assert refusals_from_server(None, 0) is None
