"""Schemathesis hooks for tests/e2e/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

The built-in `positive_data_acceptance` check wants every schema-valid request answered with 2xx.
No schema can say "these bytes decode as an image" (or "this directory holds a checkpoint"), so a
schema-valid request may still be refused for its *content*. This check is that rule made exact: a
schema-valid request gets its answer, or a 4xx whose code is about the content, never a field error
(the schema let through a field the server refuses) and never `bad_base64` (the schema's pattern is
the server's base64 rule).

One filter: a multipart form cannot carry a list of zero or one values differently from an absent
field or a plain value, so such generated cases say nothing about the server and are dropped.
"""

from __future__ import annotations

import json

import schemathesis

# path → status → error codes allowed for a schema-valid request: what the data *means* was unusable
IMAGE_ERRORS = {  # the image bytes
    400: {"empty_image", "not_an_image", "bad_image"},
    413: {"too_many_pixels", "image_too_large"},
    415: {"unsupported_format"},
}
CONTENT_ERRORS = {
    "/v1/classify": IMAGE_ERRORS,
    "/v1/classify/raw": IMAGE_ERRORS,  # the same image, as the whole body
    "/v1/classify/stream": IMAGE_ERRORS,  # /v1/classify's body, answered as events
    "/v1/admin/reload": {  # the directory named: not there, not a checkpoint, or not servable here
        422: {"invalid_checkpoint", "incompatible_checkpoint", "checkpoint_failed_trial"},
    },
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
    allowed = CONTENT_ERRORS.get(case.path, {})
    if code in allowed.get(response.status_code, ()):
        return None
    raise AssertionError(
        f"a schema-valid request was refused: {response.status_code} {response.content[:300]!r}; "
        f"only content errors ({allowed}) may refuse one"
    )
