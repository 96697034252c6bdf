"""CPU placement of the server and its inference process: the CPU-list syntax, when `auto` pins and
when it keeps away, and the cgroup quota it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from elastic_anytime.service.settings import Settings, SettingsError
from elastic_anytime.service.worker import cpu_placement
from elastic_anytime.service.worker.cpu_placement import (
    Placement,
    cgroup_cpu_limit,
    check_setting,
    format_cpus,
    parse_cpus,
    plan,
)

TWO = frozenset({0, 1})
EIGHT = frozenset(range(8))


def test_cpu_lists_read_and_write_the_cpuset_syntax() -> None:
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    assert parse_cpus(" 3 ") == {3}
    assert format_cpus({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpus(parse_cpus("4,0-1")) == "0-1,4"
    for bad in ("", "a", "1-", "3-1", "1,,2", "-1"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def test_the_setting_is_auto_off_or_two_disjoint_lists() -> None:
    assert Settings.from_env({}).cpu_placement == "off"
    assert check_setting("0-2:3") == "0-2:3"
    for bad in ("on", "0-2", "0-2:2-3", "x:1"):
        with pytest.raises(ValueError):
            check_setting(bad)
    with pytest.raises(SettingsError, match="ELASTIC_CPU_PLACEMENT"):
        Settings.from_env({"ELASTIC_CPU_PLACEMENT": "0:0"})


def test_auto_gives_the_model_the_last_cpus_and_the_server_the_rest() -> None:
    placement, why = plan("auto", TWO, torch_threads=1, cpu_limit=None, several_workers=False)
    assert placement == Placement(server=frozenset({0}), inference=frozenset({1})) and why == "auto"
    placement, _ = plan("auto", EIGHT, torch_threads=2, cpu_limit=8.0, several_workers=False)
    assert placement == Placement(server=frozenset(range(6)), inference=frozenset({6, 7}))


@pytest.mark.parametrize(
    ("cpus", "threads", "limit", "workers", "reason"),
    [
        (frozenset({0}), 1, None, False, "one CPU"),
        (TWO, 0, None, False, "every CPU"),  # torch's default: the model's threads use them all
        (TWO, 2, None, False, "every CPU"),
        (EIGHT, 1, None, True, "several workers"),
        (EIGHT, 1, 2.5, False, "quota of 2.5 on 8 CPUs"),
    ],
)
def test_auto_keeps_away_where_the_cpus_are_not_the_servers_alone(
    cpus: frozenset[int], threads: int, limit: float | None, workers: bool, reason: str
) -> None:
    placement, why = plan("auto", cpus, threads, limit, workers)
    assert placement is None and reason in why


def test_off_and_explicit_lists() -> None:
    assert plan("off", EIGHT, 1, None, False) == (None, "off")
    placement, _ = plan("0-2:3", EIGHT, 0, 1.0, True)  # as set, whatever the machine says
    assert placement == Placement(server=frozenset({0, 1, 2}), inference=frozenset({3}))
    assert placement.describe() == {"server": "0-2", "inference": "3"}


def test_the_cgroup_quota_in_cpus(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None  # no cgroup files: unlimited
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    assert cgroup_cpu_limit(v1) == 1.5


@pytest.mark.parametrize(
    ("requested", "cpus", "front_ends", "engines", "threads"),
    [
        (3, 2, 1, 1, 3),  # as set, whatever the machine
        (0, 2, 1, 1, 1),  # 2 CPUs: one for the front end, one for the model
        (0, 16, 1, 1, 15),
        (0, 16, 8, 2, 4),  # 8 front ends, the 8 CPUs left shared by 2 engines
        (0, 4, 8, 1, 1),  # never below one
    ],
)
def test_the_model_gets_the_cpus_the_front_ends_leave(
    monkeypatch: pytest.MonkeyPatch, requested: int, cpus: int, front_ends: int, engines: int, threads: int
) -> None:
    monkeypatch.setattr(cpu_placement, "usable_cpus", lambda: cpus)
    assert cpu_placement.engine_threads(requested, front_ends, engines) == threads


def test_usable_cpus_are_capped_by_the_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_placement.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(cpu_placement, "cgroup_cpu_limit", lambda: 2.5)
    assert cpu_placement.usable_cpus() == 2
    monkeypatch.setattr(cpu_placement, "cgroup_cpu_limit", lambda: None)
    assert cpu_placement.usable_cpus() == 4
