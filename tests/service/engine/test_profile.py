"""The latency profile: buckets, quantiles, the sliding window and calibration."""

import math
import random
import threading

import pytest

from elastic_anytime.service.engine.profile import MIN_FRESH, LatencyProfile, batch_buckets, calibrate


def test_batch_buckets() -> None:
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(12) == [1, 2, 4, 8, 12]


def test_bucket_lookup() -> None:
    profile = LatencyProfile(2, [1, 2, 4, 8])
    assert [profile.bucket(n) for n in (1, 2, 3, 4, 5, 8, 50)] == [1, 2, 4, 4, 8, 8, 8]


def test_quantiles_per_exit_and_bucket() -> None:
    profile = LatencyProfile(2, [1, 4])
    for ms in range(1, 101):  # 1..100 ms at exit 0, batch 1
        profile.observe(0, 1, ms / 1e3)
    profile.observe(1, 3, 0.5)  # batch 3 lands in bucket 4
    assert profile.predict(0, 1, "p50") == pytest.approx(0.050)
    assert profile.predict(0, 1, "p95") == pytest.approx(0.095)
    assert profile.predict(1, 4, "p95") == pytest.approx(0.5)
    snap = profile.snapshot()
    assert snap[0]["1"] == {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "samples": 100}
    assert "4" in snap[1] and "1" not in snap[1]


def test_sliding_window_follows_the_machine() -> None:
    profile = LatencyProfile(1, [1], window=10)
    for _ in range(10):
        profile.observe(0, 1, 0.010)
    assert profile.predict(0, 1) == pytest.approx(0.010)
    for _ in range(10):  # the machine got slower: old samples leave the window
        profile.observe(0, 1, 0.030)
    assert profile.predict(0, 1, "p50") == pytest.approx(0.030)
    assert profile.snapshot()[0]["1"]["samples"] == 10


def test_empty_bucket_borrows_the_nearest_scaled() -> None:
    profile = LatencyProfile(1, [1, 2, 4, 8])
    assert profile.predict(0, 1) == 0.0  # nothing measured yet
    profile.observe(0, 2, 0.004)
    assert profile.predict(0, 2) == pytest.approx(0.004)
    assert profile.predict(0, 8) == pytest.approx(0.016)  # 4× the batch: scaled up
    assert profile.predict(0, 1) == pytest.approx(0.004)  # smaller batch: not scaled down (conservative)


def test_predict_path_sums_the_stages() -> None:
    profile = LatencyProfile(3, [1])
    for k, seconds in enumerate((0.001, 0.002, 0.003)):
        profile.observe(k, 1, seconds)
    assert profile.predict_path(0, 1) == pytest.approx(0.001)
    assert profile.predict_path(2, 1) == pytest.approx(0.006)


def test_stage_and_head_are_kept_apart() -> None:
    profile = LatencyProfile(3, [1, 2])
    for k in range(3):
        profile.observe(k, 1, 0.001 * (k + 1), 0.0005)
    profile.observe_head(1, 2, 0.004)
    assert profile.predict_stage(1, 1) == pytest.approx(0.002)
    assert profile.predict_head(1, 1) == pytest.approx(0.0005)
    assert profile.predict(1, 1) == pytest.approx(0.0025)  # answering at exit 1: its stage and its head
    assert profile.predict_head(1, 2) == pytest.approx(0.004)
    # the path to an exit reads only that exit's head
    assert profile.predict_path(2, 1) == pytest.approx(0.001 + 0.002 + 0.003 + 0.0005)
    assert profile.snapshot()[1]["1"] == {"p50_ms": 2.5, "p95_ms": 2.5, "p99_ms": 2.5, "samples": 1}
    assert profile.sample_count(1, 2, "head") == 1 and profile.sample_count(1, 2) == 0


def test_bad_observations_are_ignored() -> None:
    profile = LatencyProfile(1, [1])
    profile.observe(5, 1, 0.1)
    profile.observe(0, 1, float("nan"))
    profile.observe(0, 1, -1.0)
    assert profile.snapshot() == [{}]
    assert not profile.calibrated


def test_calibrate_discards_warmup_and_fills_every_bucket() -> None:
    profile = LatencyProfile(3, [1, 2, 4], window=100)
    calls = []

    def time_pass(batch_size: int) -> list[tuple[float, float]]:
        calls.append(batch_size)
        first = len([c for c in calls if c == batch_size]) <= 2  # the warm-up passes are slow
        return [(1.0, 1.0) if first else (0.001 * batch_size, 0.0001 * batch_size)] * 3

    calibrate(profile, time_pass, warmup_runs=2, runs=5)
    assert calls == [1] * 7 + [2] * 7 + [4] * 7
    assert profile.calibrated
    for b in (1, 2, 4):
        assert profile.predict_stage(2, b) == pytest.approx(0.001 * b)
        assert profile.predict_head(2, b) == pytest.approx(0.0001 * b)
        assert profile.snapshot()[2][str(b)]["samples"] == 5


def test_concurrent_observe_and_read() -> None:
    profile = LatencyProfile(2, [1, 2], window=50)

    def writer() -> None:
        for i in range(2000):
            profile.observe(i % 2, 1 + i % 2, 0.001)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(200):
        profile.snapshot()
        profile.predict(1, 2)
    for t in threads:
        t.join()
    assert profile.snapshot()[0]["1"]["samples"] == 50


def test_quantiles_match_a_plain_sort_of_the_window() -> None:
    rng = random.Random(0)
    profile = LatencyProfile(1, [1], window=50)
    seen: list[float] = []
    for _ in range(500):
        value = rng.choice([0.001, 0.002, rng.random() / 100])  # repeated values too
        profile.observe(0, 1, value)
        seen.append(value)
        window = sorted(seen[-50:])
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            q = min(q, 1 - 1 / len(window)) if len(window) > 1 else q  # what the window can estimate
            rank = max(0, math.ceil(q * len(window)) - 1)  # nearest rank
            assert profile.predict_stage(0, 1, name) == window[rank]


def test_a_tail_quantile_is_never_the_maximum_of_too_few_samples() -> None:
    profile = LatencyProfile(1, [1])
    for ms in range(1, 21):  # 20 calibration-sized samples, 1..20 ms: the slowest is a stall
        profile.observe(0, 1, ms / 1e3)
    assert profile.predict_stage(0, 1, "p99") == pytest.approx(0.019)  # p95 of 20: the 19th
    for ms in range(21, 201):  # 200 samples: the full p99
        profile.observe(0, 1, ms / 1e3)
    assert profile.predict_stage(0, 1, "p99") == pytest.approx(0.198)
    assert profile.snapshot()[0]["1"]["p99_ms"] == pytest.approx(198.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_samples_age_out_with_time_not_only_with_samples() -> None:
    # a stall timed 40 s ago leaves once it is older than max_age_s, though no new sample pushed it out
    clock = Clock()
    profile = LatencyProfile(1, [1], window=256, max_age_s=30.0, clock=clock)
    for _ in range(20):
        profile.observe(0, 1, 0.050)  # the stall
    clock.now = 10.0
    for _ in range(20):
        profile.observe(0, 1, 0.001)
    assert profile.predict(0, 1, "p99") == pytest.approx(0.050)
    clock.now = 35.0  # the stall is 35 s old, the good samples 25 s
    assert profile.predict(0, 1, "p99") == pytest.approx(0.001)
    assert profile.sample_count(0, 1) == 20


def test_aging_keeps_the_newest_samples_of_a_cell() -> None:
    clock = Clock()
    profile = LatencyProfile(1, [1], max_age_s=1.0, clock=clock)
    for ms in range(1, 21):
        profile.observe(0, 1, ms / 1e3)
    clock.now = 100.0  # all of them are old: the 8 newest stay, so there is always a prediction
    assert profile.sample_count(0, 1) == MIN_FRESH
    assert profile.predict(0, 1, "p50") == pytest.approx(0.016)


def test_cold_and_warm_passes_are_kept_apart() -> None:
    profile = LatencyProfile(2, [1, 2, 4, 8])
    for _ in range(50):
        profile.observe(0, 1, 0.001, 0.0002)
        profile.observe(0, 1, 0.003, 0.0004, True)  # after an idle spell
    assert profile.predict(0, 1, "p50") == pytest.approx(0.0012)  # cold passes do not inflate the warm cells
    assert profile.predict(0, 1, "p50", cold=True) == pytest.approx(0.0034)
    assert profile.snapshot(cold=True)[0]["1"]["p50_ms"] == pytest.approx(3.4)
    # a cold batch of 4 was never timed: warm at 4 plus what going cold added at batch 1
    for _ in range(50):
        profile.observe(0, 4, 0.002, 0.0002)
    assert profile.predict(0, 4, "p50", cold=True) == pytest.approx(0.0022 + 0.0022)
    # nothing cold measured for exit 1: the warm prediction stands
    profile.observe(1, 1, 0.001, 0.0)
    assert profile.predict(1, 1, "p50", cold=True) == pytest.approx(0.001)


def test_calibration_times_cold_passes_after_idle_spells() -> None:
    profile = LatencyProfile(2, [1, 2])
    idled: list[float] = []
    calls = {"n": 0}

    def time_pass(batch_size: int) -> list[tuple[float, float]]:
        calls["n"] += 1
        slow = 3.0 if idled and len(idled) == calls.get("cold", 0) else 1.0
        return [(0.001 * slow, 0.0001), (0.002 * slow, 0.0001)]

    def idle(seconds: float) -> None:
        idled.append(seconds)
        calls["cold"] = len(idled)

    calibrate(profile, time_pass, warmup_runs=1, runs=10, idle=idle, cold_gap_s=0.01)
    assert idled == [0.01] * 10
    assert profile.sample_count(0, 1, "cold_stage") == 10 and profile.sample_count(0, 2, "cold_stage") == 0
    assert profile.predict_stage(1, 1, "p50", cold=True) == pytest.approx(0.006)
    assert profile.predict_stage(1, 1, "p50") == pytest.approx(0.002)
