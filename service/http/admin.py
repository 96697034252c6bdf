"""Admin routes, mounted only when ELASTIC_ADMIN_TOKEN is set (otherwise they do not exist: 404).

`POST /v1/admin/reload` with `Authorization: Bearer <token>` and `{"checkpoint": "<directory>"}`
swaps in another checkpoint without a restart (service.http.reload). The token is compared in constant
time; the body is read only after the token is checked, and is small (a path).
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.http.bodies import read_limited
from elastic_anytime.service.http.dependencies import Service
from elastic_anytime.service.http.errors import ApiError, field_errors, summary
from elastic_anytime.service.http.reload import reload_checkpoint
from elastic_anytime.service.http.schemas import ErrorResponse

MAX_ADMIN_BODY = 64 * 1024
_bearer = HTTPBearer(auto_error=False, scheme_name="adminToken", description="the server's ELASTIC_ADMIN_TOKEN")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="checkpoint directory on the server (model.safetensors + elastic.json); relative to its cwd",
        examples=["/models/resnet9-cifar10-v2"],
    )


class ReloadResponse(BaseModel):
    checkpoint: str = Field(..., description="the checkpoint now served (absolute path)")
    previous_checkpoint: str
    model: str
    num_exits: int
    classes: list[str]
    load_s: float = Field(..., description="seconds to load and validate it")
    calibrate_s: float = Field(..., description="seconds to measure its latency profile on this device")


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    token = request.app.state.settings.admin_token
    if token is None:  # not mounted without a token; kept as a second lock
        raise ApiError(404, "not_found", "Not Found")
    if credentials is None:
        raise ApiError(
            401,
            "missing_token",
            "this endpoint needs 'Authorization: Bearer <ELASTIC_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise ApiError(403, "invalid_token", "the admin token is wrong")


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


async def _read_json(request: Request) -> Any:
    body = await read_limited(request, MAX_ADMIN_BODY)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {err}") from None


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Serve another checkpoint without a restart (admin token)",
    description=(
        "Loads the checkpoint beside the served one, validates it, runs it once, calibrates its latency "
        "profile, then switches between two batches. On any failure the old model keeps serving and the "
        "answer says why. The new checkpoint must take the same input (size, mean, std)."
    ),
    responses={s: {"model": ErrorResponse} for s in (400, 401, 403, 409, 413, 415, 422, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReloadRequest.model_json_schema()}},
        }
    },
)
async def reload(request: Request, service: Service) -> ReloadResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", 'send application/json: {"checkpoint": "<directory>"}')
    payload = await _read_json(request)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_body", f"the JSON body must be an object, not {type(payload).__name__}")
    try:
        body = ReloadRequest.model_validate(payload, strict=True)
    except ValidationError as err:
        errors = field_errors(err.errors())
        raise ApiError(422, "invalid_field", summary(errors), errors=errors) from None
    if service.shutting_down:
        raise ApiError(503, "unavailable", "the server is shutting down", headers={"Retry-After": "1"})
    if service.reloading:
        raise ApiError(409, "reload_in_progress", "another reload is running; try again when it has finished")
    service.reloading = True  # the event loop is one thread: check-and-set cannot interleave
    try:
        result = await anyio.to_thread.run_sync(reload_checkpoint, service, body.checkpoint)
    except ReloadError as err:
        raise ApiError(err.status, err.code, err.message) from None
    finally:
        service.reloading = False
    return ReloadResponse(**result)
