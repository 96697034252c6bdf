"""The Open Inference Protocol's REST routes (KServe v2). Errors answer as the protocol says,
`{"error": "<code>: <what was wrong>"}`, with its status codes: 400 for a request that cannot be used (where
/v1 says 415 or 422 too), 404 for a model or version not served, 413 for a body over the limit, 503 with
Retry-After when the server is overloaded, warming up or draining. The health aliases `/v2/health/live` and
`/v2/health/ready` are in service.http.routes, beside /healthz and /readyz.

Left out of the OpenAPI document (/docs): the protocol has its own specification, and this server's
schema-based fuzzing (tests/e2e/test_fuzz.py) expects every schema-valid /v1 request to be answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.state import ServiceState
from elastic_anytime.service.http.v2 import infer as inference
from elastic_anytime.service.http.v2.identity import resolve
from elastic_anytime.service.http.v2.metadata import model_metadata, server_metadata

router = APIRouter(include_in_schema=False)

# /v1's codes that the protocol folds into 400 (a request it cannot use, whatever the reason)
_AS_BAD_REQUEST = frozenset({415, 422})


def error_response(err: ApiError) -> JSONResponse:
    status = 400 if err.status in _AS_BAD_REQUEST else err.status
    return JSONResponse({"error": f"{err.code}: {err.detail}"}, status_code=status, headers=err.headers)


async def _answer(handler: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await handler()
    except ApiError as err:
        return error_response(err)


def _service(request: Request) -> ServiceState:
    return request.app.state.service


@router.get("/v2")
async def server_metadata_route(request: Request) -> Response:
    return JSONResponse(server_metadata(request.app.version))


async def _model(request: Request, name: str, version: str | None) -> Response:
    async def handler() -> Response:
        service = _service(request)
        resolve(service, name, version)
        return JSONResponse(model_metadata(service))

    return await _answer(handler)


@router.get("/v2/models/{name}")
async def model_metadata_route(request: Request, name: str) -> Response:
    return await _model(request, name, None)


@router.get("/v2/models/{name}/versions/{version}")
async def model_version_metadata_route(request: Request, name: str, version: str) -> Response:
    return await _model(request, name, version)


async def _ready(request: Request, name: str, version: str | None) -> Response:
    async def handler() -> Response:
        service = _service(request)
        served, _ = resolve(service, name, version)
        if service.engine.accepting and not service.shutting_down:
            return JSONResponse({"name": served, "ready": True})
        # the protocol: a model that is not ready answers 4xx (/v2/health/ready, like /readyz, says 503)
        raise ApiError(400, "not_ready", "the model is not ready: warming up, restarting or shutting down")

    return await _answer(handler)


@router.get("/v2/models/{name}/ready")
async def model_ready_route(request: Request, name: str) -> Response:
    return await _ready(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_version_ready_route(request: Request, name: str, version: str) -> Response:
    return await _ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    async def handler() -> Response:
        service = _service(request)
        resolve(service, name, version)  # 404 before anything is read or counted: not a request for this model
        return await inference.infer(request, service)

    return await _answer(handler)


@router.post("/v2/models/{name}/infer")
async def infer_route(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer_version_route(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)
