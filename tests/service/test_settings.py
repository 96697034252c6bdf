"""Settings: defaults < ELASTIC_* environment < explicit overrides, with clear errors."""

import pytest

from elastic_anytime.service.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.device == "auto" and s.max_batch_size == 8 and s.default_budget_ms is None
    assert s.max_body_bytes > s.max_image_bytes


def test_env_then_overrides() -> None:
    env = {
        "ELASTIC_MAX_BATCH_SIZE": "16",
        "ELASTIC_MAX_BATCH_WAIT_MS": "0.5",
        "ELASTIC_REJECT_UNMEETABLE": "true",
        "ELASTIC_DEFAULT_BUDGET_MS": "20",
        "ELASTIC_CHECKPOINT": "",  # empty means unset
        "ELASTIC_UNRELATED_THING": "ignored",
    }
    s = Settings.from_env(env, max_batch_size=4, device=None)
    assert s.max_batch_size == 4  # the flag wins
    assert s.max_batch_wait_ms == 0.5 and s.reject_unmeetable is True and s.default_budget_ms == 20.0
    assert s.checkpoint is None and s.device == "auto"


def test_round_trip_through_env() -> None:
    s = Settings.from_env({}, max_batch_size=3, default_budget_ms=7.5, reject_unmeetable=True)
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ELASTIC_MAX_BATCH_SIZE", "0"),
        ("ELASTIC_MAX_BATCH_SIZE", "many"),
        ("ELASTIC_DEFAULT_BUDGET_MS", "-1"),
        ("ELASTIC_DEFAULT_BUDGET_MS", "nan"),
        ("ELASTIC_RESPONSE_MARGIN_MS", "inf"),
        ("ELASTIC_PROFILE_QUANTILE", "p90"),
        ("ELASTIC_DEFAULT_BUDGET_MS", "1e9"),  # above max_budget_ms
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name if name != "ELASTIC_DEFAULT_BUDGET_MS" or value != "1e9" else "max"):
        Settings.from_env({name: value})
