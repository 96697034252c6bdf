"""`elastic serve [CHECKPOINT] [--host] [--port] …`: the HTTP server under uvicorn.

Settings come from `ELASTIC_*` variables, overridden by flags; the result is written back to the
environment so that every uvicorn worker builds the same app through `service.http.main:create_app`.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from pathlib import Path

from elastic_anytime.service.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# flag → settings field, for the flags that map one to one
_FLAG_FIELDS = (
    "device",
    "torch_threads",
    "max_batch_size",
    "max_batch_wait_ms",
    "queue_limit",
    "engines",
    "default_budget_ms",
    "response_margin_ms",
    "max_image_bytes",
    "max_image_pixels",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, help="checkpoint directory (default: the shipped one)")
    env = os.environ
    parser.add_argument("--host", default=env.get("ELASTIC_HOST") or "127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env.get("ELASTIC_PORT") or 8000), help="port (8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env.get("ELASTIC_WORKERS") or 1),
        help="HTTP front ends sharing one engine (1)",
    )
    parser.add_argument("--engines", type=int, help="engine processes, one per GPU (1)  [ELASTIC_ENGINES]")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N  [ELASTIC_DEVICE]")
    parser.add_argument("--torch-threads", type=int, help="threads; 0: CPUs less front ends  [ELASTIC_TORCH_THREADS]")
    parser.add_argument("--max-batch-size", type=int, help="largest batch (default 8)  [ELASTIC_MAX_BATCH_SIZE]")
    parser.add_argument("--max-batch-wait-ms", type=float, help="batching wait in ms (default 2)")
    parser.add_argument("--queue-limit", type=int, help="waiting requests before 503 (default 256)")
    parser.add_argument("--default-budget-ms", type=float, help="budget when a request gives none (default: none)")
    parser.add_argument("--response-margin-ms", type=float, help="time kept free before a deadline (default 0.5)")
    parser.add_argument("--max-image-bytes", type=int, help="largest image file (default 10 MiB)")
    parser.add_argument("--max-image-pixels", type=int, help="largest image in pixels (default 40M)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def _log_config(level: str) -> dict:
    """uvicorn's logging config plus our packages, so that every worker logs the same way."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("elastic_anytime",):
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _prepare_multiprocess_dir(workers: int) -> None:
    """Several workers share metrics through files; start from an empty directory every time."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        if workers <= 1:
            return
        directory = tempfile.mkdtemp(prefix="elastic-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    log.info("prometheus multiprocess mode: %s", path)


def run(args: argparse.Namespace) -> int:
    # torch-free: this process only supervises (or is the one front end), it never holds the model
    from elastic_anytime.models.pretrained import default_checkpoint
    from elastic_anytime.service.http.model_card import ModelCardError, read_metadata

    overrides = {name: getattr(args, name) for name in _FLAG_FIELDS}
    try:
        settings = Settings.from_env(checkpoint=args.checkpoint, **overrides)
    except SettingsError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    checkpoint = Path(settings.checkpoint) if settings.checkpoint else default_checkpoint()
    try:
        read_metadata(checkpoint)  # fail here with a clear message, not in every worker
    except ModelCardError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    if args.workers < 1:
        sys.stderr.write("error: --workers must be at least 1\n")
        return 2
    os.environ.update(settings.to_env())
    _prepare_multiprocess_dir(args.workers)

    import uvicorn

    from elastic_anytime.service.http.arrival import ArrivalProtocol

    options = {
        "http": ArrivalProtocol,  # budgets count from a request's first byte (service.http.arrival)
        "host": args.host,
        "port": args.port,
        "log_config": _log_config(args.log_level),
        "log_level": args.log_level,
        "access_log": not args.no_access_log,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s) or None,
    }
    if (args.workers > 1 or settings.engines > 1) and settings.engine == "process":  # service.worker.supervisor
        from elastic_anytime.service.worker.supervisor import Supervisor

        env = {**settings.to_env(), "ELASTIC_CHECKPOINT": str(checkpoint.resolve())}  # one name in every process
        return Supervisor(env, args.workers, options, settings.drain_timeout_s, settings.engines).run()
    uvicorn.run("elastic_anytime.service.http.main:create_app", factory=True, workers=args.workers, **options)
    return 0
