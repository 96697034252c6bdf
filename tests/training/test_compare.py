"""The reproduction summary: pairs of finished runs → Markdown tables and one combined plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elastic_anytime.training.compare import accuracy_at, main


def _run(runs: Path, name: str, accuracies: list[float], mflops: list[float], seconds: list[float]) -> None:
    exits = [
        {"index": k, "name": f"block{k}", "mflops": m, "params": 10, "accuracy": a}
        for k, (a, m) in enumerate(zip(accuracies, mflops, strict=True))
    ]
    history = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)]
    (runs / name).mkdir(parents=True)
    (runs / name / "metrics.json").write_text(json.dumps({"config": {}, "history": history, "final": exits}))


def test_accuracy_at_takes_the_deepest_exit_within_the_fraction() -> None:
    exits = [{"mflops": m, "accuracy": a} for m, a in ((10, 0.5), (50, 0.7), (100, 0.8))]
    assert accuracy_at(exits, 0.25) == 0.5
    assert accuracy_at(exits, 0.5) == 0.7
    assert accuracy_at(exits, 0.05) == 0.0
    assert accuracy_at(exits, 1.0) == 0.8


def test_tables_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "a-exits", [0.4, 0.6, 0.65], [20.0, 50.0, 100.0], [30, 30])
    _run(tmp_path, "a-final", [0.7], [100.0], [20, 20])
    (tmp_path / "wall_seconds.tsv").write_text("a-exits\t90\na-final\t30\na-final\t60\n")  # the last line wins
    table, png = tmp_path / "table.md", tmp_path / "cmp.png"
    assert main([str(tmp_path), "--pair", "Net k=12=a-exits,a-final", "--png", str(png), "--markdown", str(table)]) == 0
    text = table.read_text()
    assert text == capsys.readouterr().out
    assert "| Net k=12 | 3 | 100.0 | 65.00 | 70.00 | -5.00 | 40.00 / 60.00 | 1.5 / 1.0 |" in text
    assert "| 1 | block1 | 50.0 | 50 | 60.00 |" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unfinished_runs_and_bad_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "done", [0.5], [1.0], [1])
    assert main([str(tmp_path), "--pair", "X=done,missing"]) == 1
    assert "missing/metrics.json missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--pair", "X=done"])
