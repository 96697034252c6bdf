"""`elastic info`: the installed console script on a real (tiny) checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elastic_anytime.elastic_cli import main as cli
from elastic_anytime.models.checkpoint import META_FILE, build_metadata, read_metadata, save_checkpoint
from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.models.registry import create_model

CLASSES = ["airplane", "boat", "car"]
SCRIPT = Path(sys.executable).with_name("elastic")


def _elastic(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT} (pip install -e .)"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("tiny", num_classes=len(CLASSES))
    meta = build_metadata(
        model,
        "tiny",
        {"num_classes": 3},
        CLASSES,
        (3, 32, 32),
        [0.5] * 3,
        [0.25] * 3,
        dataset="unit",
        accuracies=[0.5, None, 0.9123],
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, meta)


@pytest.mark.slow  # the console script in a subprocess
def test_info_prints_the_exits_table_and_classes(checkpoint: Path) -> None:
    result = _elastic("info", str(checkpoint))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"checkpoint  {checkpoint}" in lines
    assert "model       tiny(num_classes=3)" in lines
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["exit", "stage"])
    assert lines[header].split() == ["exit", "stage", "MFLOPs", "%", "full", "params", "accuracy"]
    meta = read_metadata(checkpoint)
    rows = [line.split() for line in lines[header + 1 : header + 1 + len(meta["exits"])]]
    for row, entry in zip(rows, meta["exits"], strict=True):
        assert row[:3] == [str(entry["index"]), entry["name"], f"{entry['mflops']:.2f}"]
        assert row[4] == f"{entry['params']:,}"
    assert rows[-1][3] == "100.0%"
    assert [row[5] for row in rows] == ["50.00%", "-", "91.23%"]
    assert "classes (3): airplane, boat, car" in lines


@pytest.mark.slow  # the console script in a subprocess
def test_info_json_is_the_metadata(checkpoint: Path) -> None:
    result = _elastic("info", str(checkpoint), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == read_metadata(checkpoint)


@pytest.mark.slow  # the console script in a subprocess
def test_info_on_a_bad_path_fails_clearly(tmp_path: Path) -> None:
    result = _elastic("info", str(tmp_path / "missing"))
    assert result.returncode != 0
    assert result.stderr.strip() == f"error: checkpoint directory not found: {tmp_path / 'missing'}"
    assert result.stdout == ""


def test_info_on_a_broken_checkpoint_fails_clearly(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / META_FILE).write_text((checkpoint / META_FILE).read_text()[:-20])
    assert cli.main(["info", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not valid JSON" in err and "Traceback" not in err


def test_info_defaults_to_the_shipped_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint  {default_checkpoint()}" in out
    assert "classes (10): airplane, automobile" in out


@pytest.mark.slow  # a fresh interpreter in a subprocess
def test_info_imports_neither_the_server_nor_the_training_code(checkpoint: Path) -> None:
    code = (
        "import sys; from elastic_cli.main import main; rc = main(['info', sys.argv[1]]); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'service', 'training')); "
        "print(rc, heavy, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stderr.strip() == "0 []"


def test_commands_not_written_yet_say_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "later", ("elastic_anytime.elastic_cli.later_cmd", "a command of a later issue"))
    assert cli.main(["later", "--any", "args"]) == 2
    assert capsys.readouterr().err == "elastic later: not implemented yet\n"


def test_a_broken_command_module_is_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the command's own module may be missing; a missing dependency inside it must surface."""
    (tmp_path / "broken_cmd.py").write_text("import no_such_dependency_for_elastic_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "broken", ("broken_cmd", "imports something missing"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_elastic_tests"):
        cli.main(["broken"])


def test_unknown_arguments_of_a_real_command_are_refused(checkpoint: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["info", str(checkpoint), "--colour"])
    assert info.value.code == 2
