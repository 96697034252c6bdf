"""The demo page's server-sent events parser (service/http/static/sse.js), run by node when it is installed;
the browser test (tests/browser) runs the same cases in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from sse_parser_cases import CASES, RUN_CASES_JS

from elastic_anytime.service.http.demo_routes import STATIC_DIR

NODE = shutil.which("node")


@pytest.mark.slow  # another process (node)
@pytest.mark.skipif(NODE is None, reason="node is not installed (tests/browser runs these cases in Chromium)")
def test_sse_parser_cases_in_node() -> None:
    script = (
        f"const {{ SSEParser }} = require({json.dumps(str(STATIC_DIR / 'sse.js'))});"
        f"const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        f"process.stdout.write(JSON.stringify(({RUN_CASES_JS})(cases)));"
    )
    run = subprocess.run([NODE, "-e", script], input=json.dumps(CASES), capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    for case, events in zip(CASES, json.loads(run.stdout), strict=True):
        assert events == case["events"], case["name"]
