"""/openapi.json tells the truth about POST /v1/classify/stream: /v1/classify's request body with the
same limits, an event stream on 200, /v1's JSON errors."""

from __future__ import annotations

from elastic_anytime.service.http.main import create_app
from elastic_anytime.service.settings import Settings


def test_the_stream_route_is_published_with_v1s_body_and_limits() -> None:
    app = create_app(Settings.from_env({}, max_budget_ms=500.0, max_budget_mflops=123.0))
    paths = app.openapi()["paths"]
    operation = paths["/v1/classify/stream"]["post"]
    assert operation["requestBody"] == paths["/v1/classify"]["post"]["requestBody"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["budget_ms"]["maximum"] == 500.0 and form["additionalProperties"] is False
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    event = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]  # one event, as a client reads it
    assert event["properties"]["event"]["enum"] == ["exit", "final", "error"] and event["required"] == [
        "event",
        "id",
        "data",
    ]
    for status in ("400", "413", "415", "422", "503"):
        assert list(operation["responses"][status]["content"]) == ["application/json"]
