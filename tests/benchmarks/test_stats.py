import pytest

from elastic_anytime.benchmarks.loadgen import Record, check_loopback
from elastic_anytime.benchmarks.oracle import accuracy_on, fixed_exit_fit, oracle_exit
from elastic_anytime.benchmarks.stats import deadline_view, summarize


def _ok(label: int, class_id: int, exit_: int, client_ms: float, server_ms: float, met: bool) -> Record:
    return Record(
        sample=0, label=label, status=200, client_ms=client_ms, class_id=class_id, exit=exit_,
        latency_ms=server_ms, queue_ms=0.1, mflops=10.0 * (exit_ + 1), budget_met=met,
    )  # fmt: skip


def test_every_request_is_exactly_one_of_ok_rejected_error() -> None:
    records = [
        _ok(1, 1, 0, 3.0, 2.0, True),
        _ok(2, 1, 2, 6.0, 5.5, False),
        _ok(3, 3, 2, 4.0, 3.5, True),
        Record(sample=0, label=0, status=503, client_ms=1.0, error="queue_full"),
        Record(sample=0, label=0, status=0, client_ms=10.0, error="ReadTimeout"),
        Record(sample=0, label=0, status=422, client_ms=1.0),
    ]
    s = summarize(records, duration_s=2.0, budget_ms=5.0)
    assert (s["sent"], s["ok"], s["rejected"], s["errors"]) == (6, 3, 1, 2)
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["server_hit_rate"] == pytest.approx(2 / 3)
    assert s["client_hit_rate"] == pytest.approx(2 / 3)  # 3.0 and 4.0 are within 5 ms, 6.0 is not
    assert s["client_hit_rate_sent"] == pytest.approx(2 / 6)  # rejects and errors count as misses
    assert s["exit_histogram"] == {"0": 1, "2": 2}
    assert s["throughput_rps"] == pytest.approx(1.5)
    assert s["client_ms"]["p50"] == pytest.approx(4.0)
    assert s["mean_mflops"] == pytest.approx(70 / 3)
    assert s["late_exits"] == {"2": 1}  # the one the server called late, from exit 2, 0.5 ms over
    assert s["late_by_ms"]["p100"] == pytest.approx(0.5)


def test_no_answers_gives_no_rates_rather_than_zero_division() -> None:
    s = summarize([Record(sample=0, label=0, status=503, client_ms=1.0)], duration_s=1.0, budget_ms=5.0)
    assert s["ok"] == 0 and s["accuracy"] is None and s["server_hit_rate"] is None
    assert s["client_hit_rate_sent"] == 0.0
    assert s["client_ms"]["p99"] is None


def test_fixed_depth_answers_are_scored_against_the_budget_after_the_fact() -> None:
    records = [_ok(1, 1, 4, 9.0, 8.0, True), _ok(1, 1, 4, 4.0, 3.0, True), _ok(1, 2, 4, 2.0, 1.5, True)]
    view = deadline_view(records, duration_s=1.0, budget_ms=5.0)
    assert view["server_hit_rate"] == pytest.approx(2 / 3)
    assert view["accuracy"] == pytest.approx(2 / 3)
    assert view["accuracy_in_time"] == pytest.approx(1 / 3)  # the correct 9 ms answer came too late
    assert view["late_exits"] == {"4": 1} and view["late_by_ms"]["p50"] == pytest.approx(3.0)


def test_oracle_takes_the_most_accurate_exit_that_fits() -> None:
    exits = [
        {"exit": 0, "accuracy": 0.5, "batch1_ms": {"p99": 1.0}},
        {"exit": 1, "accuracy": 0.8, "batch1_ms": {"p99": 2.0}},
        {"exit": 2, "accuracy": 0.7, "batch1_ms": {"p99": 3.0}},  # deeper but worse
        {"exit": 3, "accuracy": 0.9, "batch1_ms": {"p99": 6.0}},
    ]
    assert oracle_exit(1.5, exits, overhead_ms=1.0) is None
    assert oracle_exit(2.0, exits, overhead_ms=1.0) == 0
    assert oracle_exit(4.5, exits, overhead_ms=1.0) == 1
    assert oracle_exit(7.0, exits, overhead_ms=1.0) == 3
    correct = [[True, False], [False, True], [True, True]]
    assert accuracy_on(1, [1, 2, 2, 0], correct) == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/x", "http://localhost:1/", "http://[::1]:9/", "http://127.3.0.1/"]
)
def test_loopback_targets_are_allowed(url: str) -> None:
    check_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000/v1/classify", "http://example.com/", "http://192.168.1.2/"])
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)


def test_fixed_exit_fit_takes_the_most_accurate_exit_whose_server_p99_fits() -> None:
    exits = [
        {"exit": 0, "accuracy": 0.5},
        {"exit": 1, "accuracy": 0.8},
        {"exit": 2, "accuracy": 0.7},  # deeper but worse
        {"exit": 3, "accuracy": 0.9},
    ]
    fixed = [
        {"exit": 0, "server_ms": {"p99": 1.5}},
        {"exit": 1, "server_ms": {"p99": 2.5}},
        {"exit": 2, "server_ms": {"p99": 3.0}},
        {"exit": 3, "server_ms": {"p99": None}},  # no answers measured: never fits
    ]
    assert fixed_exit_fit(1.0, fixed, exits) is None
    assert fixed_exit_fit(2.0, fixed, exits) == 0
    assert fixed_exit_fit(3.0, fixed, exits) == 1
    assert fixed_exit_fit(100.0, fixed, exits) == 1
