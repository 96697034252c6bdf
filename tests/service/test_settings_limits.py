"""Settings added for reliability: the admin token is a secret (never printed, handed to workers
intact, long enough), and the new limits validate like the others."""

import pytest

from elastic_anytime.service.settings import Settings, SettingsError

TOKEN = "0123456789abcdef-token"


def test_admin_token_is_a_secret_that_reaches_the_workers() -> None:
    settings = Settings.from_env({"ELASTIC_ADMIN_TOKEN": TOKEN})
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    assert settings.to_env()["ELASTIC_ADMIN_TOKEN"] == TOKEN  # `elastic serve` passes it on through the env
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({}).admin_token is None and "ELASTIC_ADMIN_TOKEN" not in Settings.from_env({}).to_env()


def test_defaults_of_the_new_limits() -> None:
    settings = Settings.from_env({})
    assert settings.max_in_flight == 512 and settings.drain_quiet_s == 0.5 and settings.drain_timeout_s == 30


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ELASTIC_ADMIN_TOKEN", "short"),
        ("ELASTIC_MAX_IN_FLIGHT", "0"),
        ("ELASTIC_DRAIN_QUIET_S", "-1"),
        ("ELASTIC_DRAIN_QUIET_S", "nan"),
        ("ELASTIC_DRAIN_TIMEOUT_S", "inf"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
