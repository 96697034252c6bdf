"""`elastic serve` refuses bad settings and checkpoints up front, with a message and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from e2e_server import REPO_ROOT, free_port


def serve_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "elastic_anytime.elastic_cli.main", "serve", *args, "--port", str(free_port())]
    return subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def test_bad_setting_names_the_variable() -> None:
    result = serve_cli(env={"ELASTIC_MAX_BATCH_SIZE": "zero"})
    assert result.returncode == 2
    assert "ELASTIC_MAX_BATCH_SIZE" in result.stderr and "Traceback" not in result.stderr


def test_bad_flag_value() -> None:
    result = serve_cli("--default-budget-ms", "-3")
    assert result.returncode == 2 and "DEFAULT_BUDGET_MS" in result.stderr


def test_missing_checkpoint() -> None:
    result = serve_cli("/nonexistent/checkpoint")
    assert result.returncode == 1 and "not found" in result.stderr and "Traceback" not in result.stderr
