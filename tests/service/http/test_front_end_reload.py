"""A process engine's front end during a hot reload (service.http.reload with a stand-in for EngineProcess): it
reads the new checkpoint's card first, refuses the client's mistakes without bothering the engine, hands
the rest to `engine.reload`, adopts the card and the engine's new profile, and keeps the old model on any
refusal. And `engine.on_model` (another front end's reload) makes it describe the new model.
The real engine's side: tests/e2e/test_reload.py and tests/e2e/test_engine_process.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from elastic_anytime.models.pretrained import default_checkpoint
from elastic_anytime.service.engine.profile import LatencyProfile
from elastic_anytime.service.engine.reload_error import ReloadError
from elastic_anytime.service.http.model_card import META_FILE, ModelCard
from elastic_anytime.service.http.reload import CHILD_RELOAD_TIMEOUT_S, reload_checkpoint
from elastic_anytime.service.http.state import ServiceState, build_service
from elastic_anytime.service.settings import Settings

SHIPPED = default_checkpoint()
FAST = {"warmup_runs": 1, "calibration_runs": 2, "torch_threads": 1, "max_batch_size": 2}


class FakeEngine:
    """EngineProcess.reload's contract: {"load_s", "calibrate_s"} and a new `profile`, or ReloadError."""

    def __init__(self, profile: LatencyProfile, error: BaseException | None = None) -> None:
        self.profile, self.error = profile, error
        self.calls: list[tuple[Path, float]] = []

    def reload(self, path: Path, timeout: float) -> dict[str, float]:
        self.calls.append((path, timeout))
        if self.error is not None:
            raise self.error
        old = self.profile
        self.profile = LatencyProfile(ModelCard.read(path).num_exits, old.buckets, old.window, old.max_age_s)
        return {"load_s": 0.25, "calibrate_s": 1.5}


@pytest.fixture
def service() -> ServiceState:
    built = build_service(Settings.from_env({}, engine="process", **FAST))  # builds, starts nothing
    assert isinstance(built.runner, ModelCard)
    return built


def other_model(directory: Path, classes: list[str]) -> Path:
    """A checkpoint directory with the shipped elastic.json under other class names (the card reads no weights)."""
    meta = json.loads((SHIPPED / META_FILE).read_text())
    meta["classes"] = classes
    directory.mkdir(parents=True)
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def test_the_card_and_the_engines_profile_are_adopted(service: ServiceState, tmp_path: Path) -> None:
    classes = [f"c{k}" for k in range(10)]
    new = other_model(tmp_path / "v2", classes)
    engine = service.engine = FakeEngine(service.profile)  # type: ignore[assignment]
    result = reload_checkpoint(service, str(tmp_path / "." / "v2"))
    assert engine.calls == [(new.resolve(), CHILD_RELOAD_TIMEOUT_S)]
    assert result == {
        "checkpoint": str(new.resolve()),
        "previous_checkpoint": str(SHIPPED),
        "model": "resnet9",
        "num_exits": 5,
        "classes": classes,
        "load_s": 0.25,
        "calibrate_s": 1.5,
    }
    assert service.checkpoint_path == new.resolve() and service.runner.classes == classes
    assert service.profile is engine.profile
    metrics = service.metrics.registry.get_sample_value(
        "elastic_model_info", {"model": "resnet9", "checkpoint": "v2", "device": "auto", "num_exits": "5"}
    )
    assert metrics == 1


@pytest.mark.parametrize(
    ("directory", "words"),
    [
        ("/nonexistent/dir", "checkpoint directory not found"),
        ("/tmp/a\u0000b", "cannot load"),
        ("~no-such-user-here/ckpt", "cannot load"),
        (".", "missing elastic.json"),
    ],
    ids=["no-such-dir", "nul-byte", "unknown-user-home", "no-elastic-json"],
)
def test_the_clients_mistakes_never_reach_the_engine(service: ServiceState, directory: str, words: str) -> None:
    card, engine = service.runner, FakeEngine(service.profile)
    service.engine = engine  # type: ignore[assignment]
    with pytest.raises(ReloadError) as refused:
        reload_checkpoint(service, directory)
    assert (refused.value.status, refused.value.code) == (422, "invalid_checkpoint")
    assert words in refused.value.message
    assert engine.calls == [] and service.runner is card and service.checkpoint_path == SHIPPED


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ReloadError(422, "incompatible_checkpoint", "its input_size differs"), 422, "incompatible_checkpoint"),
        (ReloadError(422, "checkpoint_failed_trial", "exit 2 gave NaN"), 422, "checkpoint_failed_trial"),
        (ReloadError(503, "swap_failed", "no answer within 300s"), 503, "swap_failed"),
        (BrokenPipeError("the pipe closed"), 503, "swap_failed"),  # not the contract: still the old model
    ],
    ids=["incompatible", "failed-trial", "no-answer", "not-a-reload-error"],
)
def test_the_engines_refusal_keeps_the_old_model(
    service: ServiceState, tmp_path: Path, error: BaseException, status: int, code: str
) -> None:
    card, profile = service.runner, service.profile
    service.engine = FakeEngine(profile, error)  # type: ignore[assignment]
    with pytest.raises(ReloadError) as refused:
        reload_checkpoint(service, str(other_model(tmp_path / "v2", list("abcdefghij"))))
    assert (refused.value.status, refused.value.code) == (status, code)
    assert service.runner is card and service.profile is profile and service.checkpoint_path == SHIPPED


def test_another_front_ends_reload_is_adopted(service: ServiceState, tmp_path: Path) -> None:
    engine = service.engine
    assert engine.on_model is not None  # type: ignore[union-attr]
    new = other_model(tmp_path / "v3", [f"k{k}" for k in range(10)])
    engine.profile = LatencyProfile(5, service.profile.buckets, 8, 60.0)  # as EngineProcess._switched does
    engine.on_model(new)  # type: ignore[union-attr]
    assert service.checkpoint_path == new and service.runner.classes[0] == "k0"
    assert service.profile is engine.profile


def test_an_unreadable_card_from_another_front_end_is_logged_and_the_old_one_kept(
    service: ServiceState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = service.runner
    with caplog.at_level(logging.ERROR, logger="elastic_anytime.service.http.state"):
        service.engine.on_model(tmp_path)  # type: ignore[union-attr]
    assert service.runner is card and service.checkpoint_path == SHIPPED
    assert "cannot be read here" in caplog.text and "missing elastic.json" in caplog.text
