"""The demo page's routes and files, without a model: GET / is the page, /static serves its files,
/v1/samples lists the shipped samples; none of it is in the API schema, it names no external URL
(it works offline), and the package data ships every file. The page in a browser: tests/browser."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from elastic_anytime.service.http.demo_routes import SAMPLES_DIR, STATIC_DIR
from elastic_anytime.service.http.main import create_app
from elastic_anytime.service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def client() -> TestClient:
    # no `with`: the lifespan (the model, the engine) never starts; these routes need neither
    return TestClient(create_app(Settings.from_env({})))


def test_root_is_the_page_and_its_scripts_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts[-1] == "/static/app.js" and "/static/sse.js" in scripts
    for url in [*scripts, *re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)]:
        answer = client.get(url)
        assert answer.status_code == 200, url
    script_type = client.get("/static/app.js").headers["content-type"]
    assert script_type.startswith(("text/javascript", "application/javascript"))


def test_samples_are_listed_small_and_few(client: TestClient) -> None:
    samples = client.get("/v1/samples").json()["samples"]
    assert 3 <= len(samples) <= 10
    for sample in samples:
        answer = client.get(sample["url"])
        assert answer.status_code == 200 and len(answer.content) < 20_000
        assert (SAMPLES_DIR / Path(sample["url"]).name).stem == sample["name"]
    with Image.open(SAMPLES_DIR / Path(samples[0]["url"]).name) as image:
        assert image.size == (32, 32)


def test_missing_static_file_is_a_json_404(client: TestClient) -> None:
    answer = client.get("/static/nope.js")
    assert answer.status_code == 404 and answer.json()["error"]


def test_demo_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/v1/samples" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_the_page_names_no_external_url() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text, re.I), path


def test_package_data_ships_every_static_file() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["elastic_anytime.service.http"]
    shipped = {path for pattern in patterns for path in STATIC_DIR.parent.glob(pattern)}  # setuptools' globs
    assert {path for path in STATIC_DIR.rglob("*") if path.is_file()} <= shipped
