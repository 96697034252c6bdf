"""What the service says about itself: the model and its live latency profile (/v1/model), liveness
(/healthz), readiness (/readyz) and the Prometheus metrics (/metrics)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from elastic_anytime.service.engine.admission import idle_floor_s
from elastic_anytime.service.http.dependencies import Service, error_responses
from elastic_anytime.service.http.schemas import (
    ExitInfo,
    LatencyStats,
    ModelInfo,
)

router = APIRouter()


@router.get("/v1/model", response_model=ModelInfo, summary="Exits, cost, accuracy and the live latency profile")
async def model_info(service: Service) -> ModelInfo:
    runner, settings, profile = service.runner, service.settings, service.profile
    placement = service.engine.placement  # the process engine's CPUs, if pinned
    snapshot, cold_snapshot = profile.snapshot(), profile.snapshot(cold=True)
    front = service.engine.front()
    exits = []
    for k, meta in enumerate(runner.meta["exits"]):
        exits.append(
            ExitInfo(
                index=k,
                name=str(meta["name"]),
                mflops=float(meta["mflops"]),
                anytime_mflops=runner.exit_mflops[k],
                params=int(meta["params"]),
                accuracy=meta.get("accuracy"),
                temperature=runner.temperatures[k],
                latency={b: LatencyStats(**s) for b, s in snapshot[k].items()},
                cold_latency={b: LatencyStats(**s) for b, s in cold_snapshot[k].items()},
                cumulative_p95_ms_batch1=round(profile.predict_path(k, 1, "p95") * 1e3, 4),
            )
        )
    return ModelInfo(
        name=service.model_name,
        checkpoint=str(service.checkpoint_path),
        dataset=runner.meta.get("dataset"),
        device=service.device,
        input_size=list(runner.input_size),
        classes=list(runner.classes),
        num_exits=runner.num_exits,
        ready=service.engine.accepting,
        exits=exits,
        serving={
            "max_batch_size": settings.max_batch_size,
            "max_batch_wait_ms": settings.max_batch_wait_ms,
            "queue_limit": settings.queue_limit,
            "default_budget_ms": settings.default_budget_ms,
            "max_budget_ms": settings.max_budget_ms,
            "response_margin_ms": settings.response_margin_ms,
            "handoff_ms": round(service.engine.handoff_s * 1e3, 4),
            # what the front end costs around the engine, and the smallest budget an idle server meets
            "front_end_ms": {name: round(value * 1e3, 4) for name, value in dataclasses.asdict(front).items()},
            "idle_floor_ms": round(idle_floor_s(profile, front) * 1e3, 4),
            "cpu_placement": None if placement is None else placement.describe(),
            "profile_quantile": settings.profile_quantile,
            "reject_unmeetable": settings.reject_unmeetable,
            "guardrail_share": settings.guardrail_share,  # README "Guardrail"
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
        },
    )


@router.get("/healthz", summary="Liveness: the process and its engine are alive", responses=error_responses(503))
@router.get("/v2/health/live", summary="Liveness (KServe v2 alias)", responses=error_responses(503))
async def healthz(request: Request) -> Response:
    # not alive: an engine that will not come back by itself, so that the orchestrator restarts the server
    # instead of keeping it unready. The thread engine: its inference thread raised. The process engine
    # replaces an inference process that exits and stays alive meanwhile; it is not alive once it failed
    # for good or 3 restarts failed within 60 s (service.worker.restart_policy), and says which (health_detail).
    service = getattr(request.app.state, "service", None)
    detail = None
    if service is not None:
        detail = service.engine.health_detail
    if detail is not None:
        return JSONResponse({"error": "engine_failed", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: model loaded, warmed up and calibrated", responses=error_responses(503))
@router.get("/v2/health/ready", summary="Readiness (KServe v2 alias)", responses=error_responses(503))
async def readyz(service: Service) -> Response:
    engine = service.engine
    if engine.accepting and not service.shutting_down:
        return JSONResponse({"status": "ready"})
    restarting = engine.ready_detail  # the process engine, while it replaces its child
    if engine.error is not None:
        detail = f"the engine failed: {engine.error}"
    elif service.shutting_down:
        detail = "shutting down"
    elif restarting is not None:
        detail = restarting
    else:
        detail = "warming up and calibrating the latency profile"
    return JSONResponse({"error": "not_ready", "detail": detail}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: Service) -> Response:
    content, media_type = service.metrics.render()
    return Response(content, media_type=media_type)
