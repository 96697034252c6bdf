"""Request and response bodies. Range limits that depend on the server (budget caps, number of
classes) come in through the validation context: {"max_budget_ms", "max_budget_mflops", "num_classes"}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

EXAMPLE_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mM8oaHBwMDAxMDAwMDAAAAN6gEcJklYAwAAAABJRU5ErkJggg=="
)


def _limit(info: ValidationInfo, key: str) -> Any:
    return (info.context or {}).get(key)


class ClassifyOptions(BaseModel):
    """What a request allows. Every field is optional; none given → the server's default budget."""

    model_config = ConfigDict(extra="forbid")

    budget_ms: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="latency budget in milliseconds, from when the server receives the request",
        examples=[5.0],
    )
    budget_mflops: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="compute budget: the deepest exit whose cumulative (anytime) MFLOPs fit",
        examples=[120.0],
    )
    min_confidence: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="stop at the first exit whose top-class probability reaches this",
        examples=[0.9],
    )
    top_k: int | None = Field(None, ge=1, description="also return the k most likely classes", examples=[3])

    @field_validator("budget_ms")
    @classmethod
    def _budget_ms_cap(cls, value: float | None, info: ValidationInfo) -> float | None:
        cap = _limit(info, "max_budget_ms")
        if value is not None and cap is not None and value > cap:
            raise ValueError(f"budget_ms must be at most {cap:g} ms")
        return value

    @field_validator("budget_mflops")
    @classmethod
    def _budget_mflops_cap(cls, value: float | None, info: ValidationInfo) -> float | None:
        cap = _limit(info, "max_budget_mflops")
        if value is not None and cap is not None and value > cap:
            raise ValueError(f"budget_mflops must be at most {cap:g}")
        return value

    @field_validator("top_k", mode="before")
    @classmethod
    def _integral_float(cls, value: Any) -> Any:
        """JSON Schema counts 3.0 as an integer, so do we (strict JSON validation would refuse it)."""
        return int(value) if isinstance(value, float) and value.is_integer() else value

    @field_validator("top_k")
    @classmethod
    def _top_k_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        cap = _limit(info, "num_classes")
        if value is not None and cap is not None and value > cap:
            raise ValueError(f"top_k must be at most the number of classes ({cap})")
        return value


class ClassifyJSON(ClassifyOptions):
    """JSON body of `POST /v1/classify`; validated strictly (numbers must be JSON numbers)."""

    image: str = Field(
        ...,
        min_length=1,
        description="the image file (PNG, JPEG, WebP, BMP, GIF, TIFF) as base64, optionally a data: URL",
        examples=[EXAMPLE_PNG_B64],
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": EXAMPLE_PNG_B64, "budget_ms": 5, "top_k": 3}]},
    )


class TopK(BaseModel):
    label: str
    class_id: int
    confidence: float


class ClassifyResponse(BaseModel):
    label: str = Field(..., examples=["cat"])
    class_id: int = Field(..., examples=[3])
    confidence: float = Field(..., description="top-class probability at the answering exit", examples=[0.87])
    exit: int = Field(..., description="0-based index of the exit that answered", examples=[2])
    exit_name: str = Field(..., examples=["layer2.down"])
    num_exits: int = Field(..., examples=[5])
    mflops: float = Field(..., description="compute spent: cumulative MFLOPs up to this exit", examples=[122.1])
    latency_ms: float = Field(..., description="server-side latency, receive to answer", examples=[3.2])
    queue_ms: float = Field(..., description="time waiting in the engine queue", examples=[0.4])
    budget_ms: float | None = Field(..., description="the latency budget applied (null: none)", examples=[5.0])
    budget_mflops: float | None = Field(None, description="the compute budget applied (null: none)")
    budget_met: bool = Field(..., description="latency_ms <= budget_ms (true without a budget)")
    stopped_by: str = Field(
        ..., description="why it stopped here: final, confident, compute or deadline", examples=["deadline"]
    )
    top_k: list[TopK] | None = None


class ErrorResponse(BaseModel):
    error: str = Field(..., description="machine-readable code", examples=["invalid_field"])
    detail: str = Field(..., description="what was wrong, for a person", examples=["budget_ms: must be > 0"])
    errors: list[dict[str, Any]] | None = Field(None, description="one entry per invalid field")


class LatencyStats(BaseModel):
    p50_ms: float
    p95_ms: float
    p99_ms: float
    samples: int


class ExitInfo(BaseModel):
    index: int
    name: str
    mflops: float = Field(..., description="cost of stopping at this exit directly")
    anytime_mflops: float = Field(..., description="cost in a stage-by-stage run (earlier heads included)")
    params: int
    accuracy: float | None
    temperature: float = Field(
        1.0, description="softmax temperature fitted on held-out images; confidences are calibrated with it"
    )
    latency: dict[str, LatencyStats] = Field(
        ..., description="live profile of this stage + head: batch-size bucket → p50/p95"
    )
    cold_latency: dict[str, LatencyStats] = Field(
        default_factory=dict,
        description="the same, for batches that started after the engine sat idle (sparse traffic pays these)",
    )
    cumulative_p95_ms_batch1: float = Field(..., description="predicted time from the image to this exit, batch 1")


class ModelInfo(BaseModel):
    name: str
    checkpoint: str
    dataset: str | None
    device: str
    input_size: list[int]
    classes: list[str]
    num_exits: int
    ready: bool
    exits: list[ExitInfo]
    serving: dict[str, Any] = Field(..., description="batching and budget settings in force")
