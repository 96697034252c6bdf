"""The latency profile: buckets, quantiles, the sliding window and calibration."""

import math
import random
import threading

import pytest

from service.profile import LatencyProfile, batch_buckets, calibrate


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
