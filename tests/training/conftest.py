"""Training test fixtures: a generated ImageFolder, and decode caches kept out of ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_fixtures import make_image_folder


@pytest.fixture(autouse=True)
def _decode_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write decode caches into the user's ~/.cache during tests."""
    monkeypatch.setenv("ELASTIC_CACHE", str(tmp_path / "decode-cache"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("colours"))
