"""What the routes depend on: the service (one dependency, async so that FastAPI solves it on the
event loop) and the error responses of the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from elastic_anytime.service.http.schemas import (
    ErrorResponse,
)
from elastic_anytime.service.http.state import ServiceState


async def get_service(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, two thread hand-offs per request
    return request.app.state.service


Service = Annotated[ServiceState, Depends(get_service)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}
