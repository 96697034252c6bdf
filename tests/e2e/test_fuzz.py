"""Schema-based fuzzing (schemathesis) of the live server against its own OpenAPI document.

Every operation in `/openapi.json` (the admin reload included: the server runs with a token and the
fuzzer sends it) gets examples, coverage cases and random cases, positive and negative. Checks:
no 5xx, every status code, content type, header and body as the schema documents them, schema-
violating requests refused with a 4xx, and (fuzz_checks.py) schema-valid requests answered or
refused only for their image content. Bounded by time: the fuzzing phase repeats until
ELASTIC_FUZZ_SECONDS (default 30) are spent, ELASTIC_FUZZ_EXAMPLES per operation and round; a fixed
seed (ELASTIC_FUZZ_SEED) so CI runs are repeatable. README "Reliability" lists what it found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from e2e_server import serve

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("ELASTIC_FUZZ_SECONDS", "30"))
EXAMPLES = int(os.environ.get("ELASTIC_FUZZ_EXAMPLES", "50"))
SEED = os.environ.get("ELASTIC_FUZZ_SEED", "7")
TOKEN = "fuzz-admin-token"
MIN_CASES = 100  # a run that generated fewer did not really fuzz


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    # budgets are answered, never refused, here: whether a tight budget is refused (422, or 503 when the
    # fuzzer's own concurrent requests are queued ahead) depends on timing, not on the input, and is
    # tested in test_admission.py and test_overload.py; here every schema-valid input gets its answer
    env = {"ELASTIC_ADMIN_TOKEN": TOKEN, "ELASTIC_WARMUP_RUNS": "1", "ELASTIC_CALIBRATION_RUNS": "5",
           "ELASTIC_REJECT_UNMEETABLE": "false"}  # fmt: skip
    report_path = tmp_path / "report.json"
    with serve(env=env) as server:
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",  # replaced by fuzz_checks.py
            "--max-time", str(SECONDS), "--max-examples", str(EXAMPLES), "--seed", SEED,
            "--workers", "2", "--request-timeout", "60", "--header", f"Authorization: Bearer {TOKEN}",
            "--no-color", "--report", "json", "--report-json-path", str(report_path),
        ]  # fmt: skip
        run_env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "fuzz_checks.py")}
        result = subprocess.run(
            command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=SECONDS + 240
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-8000:]
        report = json.loads(report_path.read_text())
        cases = report["test_cases"]["generated"]
        assert cases >= MIN_CASES, output[-3000:]
        assert report["operations"]["tested"] == report["operations"]["total"], report["operations"]
        assert not report["failures"] and not report["errors"], report
        print(f"schemathesis: {cases} cases, {report['operations']['tested']} operations, no failures")
        # still healthy afterwards, and nothing escaped as an unhandled error
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
        log = server.log()
        assert "Traceback" not in log and '" 500' not in log, log[-3000:]
