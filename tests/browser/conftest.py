"""Browser fixtures: a real server (tests/e2e/e2e_server.py) and Debian's Chromium driven by Playwright.

`playwright install` cannot download browsers here, so Playwright launches the system's chromium through
`executable_path` (ELASTIC_CHROMIUM, default /usr/bin/chromium), with the flags that keep it off the network
(without them it tries Google's update and sync services). Every test here is marked `browser` and `slow`;
`make check-browser` runs them, `make test` leaves tests/browser out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # the e2e server helper

from e2e_server import serve

CHROMIUM = os.environ.get("ELASTIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve() as server:
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[browser]' (make check-browser)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set ELASTIC_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflinePage:
    """A page whose requests may only go to the server under test: any other is refused and recorded,
    so a test proves the page works offline. Script errors are recorded too."""

    def __init__(self, browser: Any, server_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._only_the_server(server_url))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))

    def _only_the_server(self, server_url: str) -> Any:
        def handle(route: Any) -> None:
            if route.request.url.startswith(server_url + "/"):
                route.continue_()
            else:
                self.outside.append(route.request.url)
                route.abort()

        return handle


@pytest.fixture
def offline_page(browser: Any, server_url: str) -> Iterator[OfflinePage]:
    page = OfflinePage(browser, server_url)
    yield page
    page.context.close()
    assert page.outside == [], "the page asked for something outside the server"
    assert page.errors == [], "the page raised script errors"
