"""What the Open Inference Protocol calls the served model: its name is the checkpoint's directory name
(`resnet9-cifar10`), its version a short prefix of the SHA-256 of its weights. Both follow a hot reload."""

from __future__ import annotations

from typing import Any

from elastic_anytime.service.http.errors import ApiError
from elastic_anytime.service.http.state import ServiceState

VERSION_HEX_DIGITS = 12  # as short as a git hash: unique among the checkpoints one server ever serves


def model_name(service: ServiceState) -> str:
    return service.checkpoint_path.name


def model_version(runner: Any) -> str:
    """A prefix of the weights' SHA-256 from elastic.json (every checkpoint written here has it; "1" if not)."""
    digest = str(runner.meta.get("weights_sha256") or "")
    return digest[:VERSION_HEX_DIGITS] or "1"


def resolve(service: ServiceState, name: str, version: str | None) -> tuple[str, str]:
    """(name, version) of the served model when the request names it, else ApiError 404 saying what is served."""
    served, current = model_name(service), model_version(service.runner)
    if name != served:
        detail = f"model {name!r} is not served here; this server serves {served!r} (version {current})"
        raise ApiError(404, "model_not_found", detail)
    if version is not None and version != current:
        detail = f"model {name!r} has no version {version!r}; the version served now is {current!r}"
        raise ApiError(404, "version_not_found", detail)
    return served, current
