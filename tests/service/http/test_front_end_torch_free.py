"""With the process engine (the default), the HTTP front end holds no weights and never imports torch: the
model runs in the inference process, and the front end serves from the checkpoint's card
(service.http.model_card). Checked in fresh interpreters, since this test process has torch already
(tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# what must stay out of a front end: torch and everything that imports it (models/__init__.py does)
FORBIDDEN = "[m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'models', 'safetensors')]"


def run_python(code: str, timeout: float) -> dict:
    """Run `code` in a fresh interpreter at the repository root; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_front_end_imports_no_torch() -> None:
    found = run_python(
        f"""
        import json, sys
        import elastic_anytime.service.http.main, elastic_anytime.service.http.state
        import elastic_anytime.service.http.reload, elastic_anytime.service.http.admin
        import elastic_anytime.service.http.model_card
        print(json.dumps({FORBIDDEN}))
        """,
        timeout=60,
    )
    assert found == []


@pytest.mark.slow  # starts the inference process (seconds)
def test_a_serving_front_end_with_the_process_engine_imports_no_torch() -> None:
    # every route family a request can take, a refused reload and a shutdown, then the modules loaded
    found = run_python(
        f"""
        import base64, json, sys, time
        from pathlib import Path
        from fastapi.testclient import TestClient
        from elastic_anytime.service.http.main import create_app
        from elastic_anytime.service.settings import Settings

        settings = Settings.from_env({{}}, engine="process", admin_token="t" * 20, warmup_runs=1,
                                     calibration_runs=2, torch_threads=1, max_batch_size=2)
        jpeg = Path("service/http/static/samples/cat.jpg").read_bytes()
        statuses = {{}}
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready"
                time.sleep(0.05)
            service = client.app.state.service
            statuses["card"] = type(service.runner).__name__
            model = client.get("/v1/model").json()
            statuses["model"] = [model["num_exits"], model["device"], model["exits"][1]["anytime_mflops"]]
            image = base64.b64encode(jpeg).decode()
            answer = client.post("/v1/classify", json={{"image": image, "top_k": 2}})
            statuses["classify"] = [answer.status_code, answer.json().get("exit_name")]
            statuses["multipart"] = client.post("/v1/classify", files={{"image": ("cat.jpg", jpeg)}}).status_code
            stream = client.post("/v1/classify/stream", json={{"image": image}})
            statuses["stream"] = [stream.status_code, stream.text.count("event: exit")]
            name = service.checkpoint_path.name
            statuses["v2_meta"] = client.get(f"/v2/models/{{name}}").status_code
            body = {{"inputs": [{{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}}]}}
            statuses["v2_infer"] = client.post(f"/v2/models/{{name}}/infer", json=body).status_code
            statuses["openapi"] = client.get("/openapi.json").status_code
            statuses["metrics"] = client.get("/metrics").status_code
            refused = client.post("/v1/admin/reload", json={{"checkpoint": "/"}},
                                  headers={{"Authorization": "Bearer " + "t" * 20}})
            statuses["reload"] = [refused.status_code, refused.json()["error"]]
        print(json.dumps({{"statuses": statuses, "forbidden": {FORBIDDEN}}}))
        """,
        timeout=300,
    )
    statuses = found["statuses"]
    assert statuses["card"] == "ModelCard"
    assert statuses["model"] == [5, "cpu", 81.9868]  # "auto" as the inference process resolved it, told when ready
    assert statuses["classify"] == [200, "layer3.res"] and statuses["multipart"] == 200
    assert statuses["stream"] == [200, 4]  # exits 0-3 as they come, then the final one
    assert statuses["v2_meta"] == statuses["v2_infer"] == statuses["openapi"] == statuses["metrics"] == 200
    assert statuses["reload"] == [422, "invalid_checkpoint"]
    assert found["forbidden"] == []
