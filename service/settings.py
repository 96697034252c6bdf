"""Server settings: defaults < `ELASTIC_*` environment variables < explicit overrides (CLI flags).

A plain pydantic model rather than pydantic-settings: one small `from_env` is all we need, and it keeps
the dependency list short. Every field `foo_bar` is read from `ELASTIC_FOO_BAR`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from elastic_anytime.service.worker.cpu_placement import check_setting

ENV_PREFIX = "ELASTIC_"


class SettingsError(ValueError):
    """Settings from the environment or flags are invalid; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str | None = Field(None, description="checkpoint directory; empty: the shipped one")
    device: str = Field("auto", description="'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1'…")
    torch_threads: int = Field(0, ge=0, le=256, description="model intra-op threads; 0: CPUs less one per front end")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'auto': bfloat16 on a CPU with native bfloat16, else float32 (see service.engine.runner)"
    )

    # batching and admission
    max_batch_size: int = Field(8, ge=1, le=1024)
    max_batch_wait_ms: float = Field(2.0, ge=0, le=10_000, allow_inf_nan=False)
    queue_limit: int = Field(256, ge=1, le=1_000_000, description="requests waiting to run; more → 503")
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After header on 503")
    reject_unmeetable: bool = Field(
        True,
        description="refuse a request whose first exit cannot meet its budget_ms (422; 503 when the queue ahead is "
        "the cause) instead of answering it late; false: always answer",
    )
    max_in_flight: int = Field(
        512, ge=1, le=1_000_000, description="classify requests being read, decoded or run at once; more → 503"
    )

    # shutdown and administration
    drain_timeout_s: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)
    drain_quiet_s: float = Field(
        0.5, ge=0, le=60, allow_inf_nan=False, description="on SIGTERM: close only after this long with no request"
    )
    admin_token: SecretStr | None = Field(None, description="bearer token for /v1/admin/*; unset: no admin routes")

    # budgets
    default_budget_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="None: final exit")
    max_budget_ms: float = Field(60_000.0, gt=0, allow_inf_nan=False)
    max_budget_mflops: float = Field(1e9, gt=0, allow_inf_nan=False)
    # kept free before a deadline when going deeper; with p99 predictions 0.5 ms covers the rest (on the
    # H200 the whole path takes about 1 ms, so 1 ms cost tight budgets their deeper exits)
    response_margin_ms: float = Field(0.5, ge=0, le=10_000, allow_inf_nan=False)
    # room kept, on top of that margin, for answers to reach their handlers (a thread wake-up, or the pipe
    # from the inference process and a busy event loop): this quantile of the last second's hand-offs
    # (service.engine.handoff_estimate); off: none
    handoff_quantile: Literal["off", "p50", "p95", "p99"] = "p50"

    # latency profile
    # p99: on a shared CPU the stage times under load have long tails (GIL and core contention); with
    # p95, 8 ms budgets at half of saturation were met 97.6% of the time, with p99 99.4% (same run, same machine)
    profile_quantile: Literal["p50", "p95", "p99"] = "p99"
    profile_window: int = Field(256, ge=8, le=100_000, description="observed stage times kept per exit × bucket")
    profile_max_age_s: float = Field(
        30.0, gt=0, le=86_400, allow_inf_nan=False,
        description="observed stage times older than this leave the profile (its 8 newest per cell stay)",
    )  # fmt: skip
    cold_after_ms: float = Field(
        1.0, ge=0, le=60_000, allow_inf_nan=False,
        description="a batch that starts after the engine sat idle this long is predicted and timed as cold",
    )  # fmt: skip
    idle_refresh_ms: float = Field(
        250.0,
        ge=0,
        le=3_600_000,
        allow_inf_nan=False,
        description="idle this long, time one batch-1 pass into the latency profile (stops when a request "
        "arrives); 0: never",
    )
    # thread: the engine runs in a thread of the server process; process: in a child process with a GIL
    # of its own (service.worker.client)
    engine: Literal["thread", "process"] = "process"
    # a shared engine process's Unix socket (`elastic serve --workers N` sets it: service.worker.supervisor); the
    # front end connects to it instead of starting an inference process of its own
    engine_socket: str | None = None
    # engine processes behind the front ends (`elastic serve`): one per GPU, each on cuda:<index>; on a CPU
    # more than one only splits the cores
    engines: int = Field(1, ge=1, le=64, description="engine processes; the front ends spread requests over them")
    # with the process engine: CPUs of its own for the inference process, the rest for the server
    # (service.worker.cpu_placement)
    cpu_placement: str = Field("off", description="'off', 'auto', or SERVER:INFERENCE CPU lists such as 0-2:3")
    # the inference thread takes the GIL back after every torch op; while the event loop parses other
    # requests it waits up to this long each time (dozens of ops per stage): see docs/performance.md
    gil_switch_interval_ms: float = Field(
        0.1, gt=0, le=100, allow_inf_nan=False, description="sys.setswitchinterval for the whole process"
    )
    guardrail_share: float = Field(
        0.01, ge=0, le=1, allow_inf_nan=False,
        description="share of early answers re-run to the final exit while the engine is idle, their agreement "
        "counted per exit (service.engine.guardrail); 0: off",
    )  # fmt: skip
    warmup_runs: int = Field(3, ge=0, le=1000)
    calibration_runs: int = Field(20, ge=1, le=10_000)

    # input limits
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1024**3)
    max_image_pixels: int = Field(40_000_000, ge=1024, le=1_000_000_000, description="decompression-bomb guard")
    decode_threads: int = Field(4, ge=1, le=256, description="images decoded at once (memory bound)")
    # the Open Inference Protocol (/v2) carries a batch of images in one request; its body limit scales with it
    max_images_per_request: int = Field(
        32, ge=1, le=4096, description="images in one /v2 infer request; its body may hold this many images"
    )

    @field_validator("admin_token")
    @classmethod
    def _token_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("cpu_placement")
    @classmethod
    def _placement_is_valid(cls, value: str) -> str:
        return check_setting(value)

    @model_validator(mode="after")
    def _budget_fits_range(self) -> Settings:
        if self.default_budget_ms is not None and self.default_budget_ms > self.max_budget_ms:
            raise ValueError("default_budget_ms must not exceed max_budget_ms")
        return self

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: a base64 image is 4/3 of its bytes, plus room for the other fields."""
        return self.max_image_bytes * 4 // 3 + 64 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `ELASTIC_*` from `env` (default: os.environ), then non-None `overrides`."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper() or '?'}: {e['msg']}" for e in err.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from None

    def to_env(self) -> dict[str, str]:
        """`ELASTIC_*` variables that reproduce these settings (how `elastic serve` hands them to workers)."""
        env = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                env[ENV_PREFIX + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return env
