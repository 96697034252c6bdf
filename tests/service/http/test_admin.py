"""The admin route in-process (the real app and model through Starlette's TestClient): absent without
a token, then every refusal it documents. Reloads themselves run on the real server: tests/e2e/test_reload.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from elastic_anytime.service.http.main import create_app
from elastic_anytime.service.settings import Settings

TOKEN = "admin-test-token-0123"
FAST = {"warmup_runs": 1, "calibration_runs": 2, "torch_threads": 1, "max_batch_size": 2}


def ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.05)
    return client


@pytest.fixture(scope="module")
def admin() -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_env({}, admin_token=TOKEN, **FAST))) as client:
        yield ready(client)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_there_is_no_admin_route() -> None:
    with TestClient(create_app(Settings.from_env({}, **FAST))) as client:
        response = client.post("/v1/admin/reload", json={"checkpoint": "/tmp"}, headers=auth())
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert not any(path.startswith("/v1/admin") for path in client.get("/openapi.json").json()["paths"])


def test_the_schema_documents_the_route_and_its_bearer_token(admin: TestClient) -> None:
    schema = admin.get("/openapi.json").json()
    operation = schema["paths"]["/v1/admin/reload"]["post"]
    assert operation["security"] == [{"adminToken": []}]
    assert schema["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": "the server's ELASTIC_ADMIN_TOKEN",
    }  # fmt: skip
    assert {"401", "403", "409", "422"} <= set(operation["responses"])


REFUSAL_IDS = ["no-token", "wrong-token", "other-scheme", "not-json", "malformed", "array", "no-field",
               "not-a-string", "empty", "extra-field", "huge-body", "no-such-dir", "nul-byte",
               "unknown-user-home"]  # fmt: skip


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"json": {"checkpoint": "/tmp"}}, 401, "missing_token"),
        ({"json": {"checkpoint": "/tmp"}, "headers": auth("wrong-token-wrong-token")}, 403, "invalid_token"),
        ({"json": {"checkpoint": "/tmp"}, "headers": {"Authorization": "Token " + TOKEN}}, 401, "missing_token"),
        ({"content": b"checkpoint=/tmp", "headers": {**auth(), "content-type": "text/plain"}}, 415, None),
        ({"content": b"{", "headers": {**auth(), "content-type": "application/json"}}, 400, "malformed_json"),
        ({"content": b"[]", "headers": {**auth(), "content-type": "application/json"}}, 422, "invalid_body"),
        ({"json": {}, "headers": auth()}, 422, "invalid_field"),
        ({"json": {"checkpoint": 5}, "headers": auth()}, 422, "invalid_field"),
        ({"json": {"checkpoint": ""}, "headers": auth()}, 422, "invalid_field"),
        ({"json": {"checkpoint": "/tmp", "force": True}, "headers": auth()}, 422, "invalid_field"),
        ({"json": {"checkpoint": "x" * 70_000}, "headers": auth()}, 413, "body_too_large"),
        ({"json": {"checkpoint": "/nonexistent/dir"}, "headers": auth()}, 422, "invalid_checkpoint"),
        ({"json": {"checkpoint": "/tmp/a\u0000b"}, "headers": auth()}, 422, None),
        ({"json": {"checkpoint": "~no-such-user-here/ckpt"}, "headers": auth()}, 422, None),
    ],
    ids=REFUSAL_IDS,
)
def test_refusals(admin: TestClient, request_kwargs: dict, status: int, code: str | None) -> None:
    response = admin.post("/v1/admin/reload", **request_kwargs)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"] == code
    assert admin.get("/v1/model").json()["name"] == "resnet9"


def test_one_reload_at_a_time_and_none_while_shutting_down(admin: TestClient) -> None:
    service = admin.app.state.service  # type: ignore[attr-defined]
    body = {"checkpoint": "/nonexistent/dir"}
    service.reloading = True
    try:
        busy = admin.post("/v1/admin/reload", json=body, headers=auth())
    finally:
        service.reloading = False
    assert busy.status_code == 409 and busy.json()["error"] == "reload_in_progress"
    service.shutting_down = True
    try:
        closing = admin.post("/v1/admin/reload", json=body, headers=auth())
        ready_while_closing = admin.get("/readyz").status_code
        classify_while_closing = admin.post("/v1/classify", json={"image": "AAAA"})
    finally:
        service.shutting_down = False
    assert closing.status_code == 503 and ready_while_closing == 503
    assert classify_while_closing.status_code == 503 and classify_while_closing.json()["error"] == "unavailable"
    assert classify_while_closing.headers["retry-after"] == "1"
