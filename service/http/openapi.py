"""The OpenAPI document with this server's real limits in it.

FastAPI builds the schema from the pydantic models, which cannot know the limits that come from
settings and from the loaded model. Schema-based fuzzing (tests/e2e/test_fuzz.py) showed what that
costs: requests that the schema called valid were refused with 422. So the published schema states
the caps (`budget_ms` ≤ ELASTIC_MAX_BUDGET_MS, `budget_mflops` ≤ ELASTIC_MAX_BUDGET_MFLOPS,
`top_k` ≤ number of classes), what base64 the `image` string may hold, and that multipart form
fields (and the query parameters of `/v1/classify/raw`) are plain values that cannot be null, with no
others allowed. It is rebuilt when a reload changes the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

# What `request_parsing.b64_image` accepts: an optional data: URL prefix, then standard base64 with its
# padding; ASCII whitespace (line breaks of MIME-wrapped base64) anywhere in the payload.
_WS = r"[ \t\r\n]*"
_B64 = r"[A-Za-z0-9+/]"
BASE64_PATTERN = (
    rf"^(data:[^,]*,)?{_WS}(?:{_B64}{_WS}{_B64}{_WS}{_B64}{_WS}{_B64}{_WS})*"
    rf"(?:{_B64}{_WS}{_B64}{_WS}={_WS}={_WS}|{_B64}{_WS}{_B64}{_WS}{_B64}{_WS}={_WS})?$"
)


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an `anyOf: [X, null]` property (where optional fields keep their bounds)."""
    for branch in prop.get("anyOf", ()):
        if branch.get("type") != "null":
            return branch
    return prop


def _cap(prop: dict[str, Any], maximum: float | None) -> None:
    if maximum is not None:
        _non_null(prop)["maximum"] = maximum


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A form field is text or absent, never null: keep only the typed branch, with the docs."""
    out = {k: v for k, v in prop.items() if k != "anyOf"}
    out.update(_non_null(prop))
    return out


def apply_limits(schema: dict[str, Any], limits: dict[str, float | None]) -> None:
    """Write `limits` (max_budget_ms, max_budget_mflops, num_classes) into the classify request bodies."""
    for path in ("/v1/classify", "/v1/classify/stream"):  # the stream takes the same body
        operation = schema["paths"].get(path, {}).get("post")
        if operation is not None:
            _limit_body(operation["requestBody"]["content"], limits)
    raw = schema["paths"].get("/v1/classify/raw", {}).get("post")
    if raw is not None:  # the same options as query parameters: plain values (never null), same caps
        caps = {"budget_ms": "max_budget_ms", "budget_mflops": "max_budget_mflops", "top_k": "num_classes"}
        for parameter in raw.get("parameters", []):
            parameter["schema"] = _without_null(parameter["schema"])
            if parameter["name"] in caps:
                _cap(parameter["schema"], limits.get(caps[parameter["name"]]))


def _limit_body(content: dict[str, Any], limits: dict[str, float | None]) -> None:
    form = content["multipart/form-data"]["schema"]
    body = content["application/json"]["schema"]
    for props in (form["properties"], body["properties"]):
        _cap(props["budget_ms"], limits.get("max_budget_ms"))
        _cap(props["budget_mflops"], limits.get("max_budget_mflops"))
        _cap(props["top_k"], limits.get("num_classes"))
    for name, prop in list(form["properties"].items()):
        if name != "image":
            form["properties"][name] = _without_null(prop)
    form["additionalProperties"] = False
    body["properties"]["image"]["pattern"] = BASE64_PATTERN


def install_openapi(app: FastAPI, limits: Callable[[], tuple[object, dict[str, float | None]]]) -> None:
    """Serve the schema with `limits()` applied. `limits` returns (a key that changes when the limits
    change, e.g. the model runner; the limits); the schema is rebuilt whenever the key changes."""
    build = app.openapi
    state: dict[str, Any] = {"key": None, "schema": None}

    def openapi() -> dict[str, Any]:
        key, values = limits()
        if state["schema"] is None or state["key"] is not key:
            schema = copy.deepcopy(build())
            apply_limits(schema, values)
            state.update(key=key, schema=schema)
        return state["schema"]

    app.openapi = openapi  # type: ignore[method-assign]
