"""`create_app(settings)`: the FastAPI app factory. The model loads in the lifespan, never at import;
the engine's thread warms up and calibrates, then `/readyz` turns ready. On SIGTERM the service
first drains (service.http.shutdown: new requests get 503, accepted ones finish), then uvicorn stops
listening, and the lifespan closes the engine, which answers anything still queued before its
thread ends. Admin routes (hot reload) exist only when ELASTIC_ADMIN_TOKEN is set.

Several workers: `uvicorn --factory elastic_anytime.service.http.main:create_app --workers N` (settings from ELASTIC_*).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from elastic_anytime.service.http import admin
from elastic_anytime.service.http.demo_routes import install_demo
from elastic_anytime.service.http.errors import install_error_handlers
from elastic_anytime.service.http.metrics import multiprocess_dir
from elastic_anytime.service.http.openapi import install_openapi
from elastic_anytime.service.http.routes import router
from elastic_anytime.service.http.shutdown import install_drain
from elastic_anytime.service.http.state import build_service
from elastic_anytime.service.http.status_routes import router as status_router
from elastic_anytime.service.http.stream_routes import router as stream_router
from elastic_anytime.service.http.v2.routes import router as v2_router
from elastic_anytime.service.settings import Settings
from elastic_anytime.service.worker.heap import freeze_long_lived

log = logging.getLogger(__name__)

DESCRIPTION = """Anytime image classification with an elastic (multi-exit) network.

Every request may carry a latency budget (`budget_ms`), a compute budget (`budget_mflops`) and a
confidence target (`min_confidence`); the server runs the network stage by stage and answers from
the deepest exit that fits, instead of timing out."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(build_service, settings)
        app.state.service = service
        service.engine.start()
        freeze_long_lived("front end")
        undo_drain = install_drain(service, asyncio.get_running_loop())
        try:
            yield
        finally:
            undo_drain()
            service.shutting_down = True
            log.info("shutting down: answering %d queued requests", service.engine.queue_depth)
            await anyio.to_thread.run_sync(service.engine.stop, settings.drain_timeout_s)
            if multiprocess_dir():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(title="Elastic", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(status_router)  # /v1/model, /healthz, /readyz, /metrics
    app.include_router(stream_router)  # POST /v1/classify/stream: server-sent events, one per exit
    app.include_router(v2_router)  # the Open Inference Protocol (KServe v2)
    install_demo(app)  # GET /: the demo page, its /static files and /v1/samples (not in the schema)
    if settings.admin_token is not None:
        app.include_router(admin.router)

    def limits() -> tuple[object, dict[str, float | None]]:
        runner = getattr(getattr(app.state, "service", None), "runner", None)
        return runner, {
            "max_budget_ms": settings.max_budget_ms,
            "max_budget_mflops": settings.max_budget_mflops,
            "num_classes": len(runner.classes) if runner is not None else None,
        }

    install_openapi(app, limits)
    return app
