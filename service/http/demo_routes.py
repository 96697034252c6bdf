"""The demo page: `GET /` serves one static page (service/http/static/, no build step, no external URL) that
classifies a sample or dropped image under a budget, shows each exit as it arrives from
/v1/classify/stream, and charts the server's per-exit latency profile from /v1/model.

Kept out of the OpenAPI schema (it is not part of the API the fuzzer checks) and away from admission
and metrics: these routes never touch the engine.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
SAMPLES_DIR = STATIC_DIR / "samples"
SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")

router = APIRouter(include_in_schema=False)


def sample_images() -> list[dict[str, str]]:
    """The shipped sample images, sorted by name: [{name, url}], the name being the file's stem (its class)."""
    files = sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    return [{"name": p.stem, "url": f"/static/samples/{p.name}"} for p in files]


@router.get("/")
async def demo_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/v1/samples")
async def samples() -> JSONResponse:
    return JSONResponse({"samples": sample_images()})


def install_demo(app: FastAPI) -> None:
    """Add the page, the sample listing and /static to `app`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
