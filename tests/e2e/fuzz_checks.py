"""Schemathesis hooks for tests/e2e/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

The built-in `positive_data_acceptance` check wants every schema-valid request answered with 2xx.
No schema can say "these bytes decode as an image", so a schema-valid classify request may still be
refused for its image *content*. This check is that rule made exact: a schema-valid request gets
its answer, or a 4xx whose code is about the image bytes, never a 422 (which would mean the schema
let through a field the server refuses) and never `bad_base64` (the schema's pattern is the
server's base64 rule).

One filter: a multipart form cannot carry a list of zero or one values differently from an absent
field or a plain value, so such generated cases say nothing about the server and are dropped.
"""

from __future__ import annotations

import json

import schemathesis

# status → error codes allowed for a schema-valid classify request: the image content was unusable
IMAGE_CONTENT_ERRORS = {
    400: {"empty_image", "not_an_image", "bad_image"},
    413: {"too_many_pixels", "image_too_large"},
    415: {"unsupported_format"},
}


@schemathesis.hook
def filter_case(context, case) -> bool:
    if not (case.media_type or "").startswith("multipart/") or not isinstance(case.body, dict):
        return True
    return not any(isinstance(v, list) and len(v) <= 1 for k, v in case.body.items() if k != "image")


@schemathesis.check
def schema_valid_requests_are_answered(ctx, response, case) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    try:
        code = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        code = None
    if case.path == "/v1/classify" and code in IMAGE_CONTENT_ERRORS.get(response.status_code, ()):
        return None
    raise AssertionError(
        f"a schema-valid request was refused: {response.status_code} {response.content[:300]!r}; "
        f"only image-content errors ({IMAGE_CONTENT_ERRORS}) may refuse one"
    )
