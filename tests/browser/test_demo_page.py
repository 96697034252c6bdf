"""The demo page in a real Chromium against a real server: a sample under a generous budget gets an answer,
streamed exit by exit up to the last one; the tightest budget the server accepts gets an earlier exit; the
live chart fills from /v1/model; without the stream route the page falls back to /v1/classify. Nothing
outside the server is requested (the offline_page fixture). Saves the README's screenshot, docs/demo.png."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sse_parser_cases import CASES, RUN_CASES_JS

from elastic_anytime.service.http.demo_routes import SAMPLES_DIR

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "docs" / "demo.png"
GENEROUS_MS = 1000.0
ANSWER_TIMEOUT_MS = 30_000


def open_demo(page: Any, server_url: str) -> None:
    page.goto(server_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=ANSWER_TIMEOUT_MS)


def classify(page: Any, budget_ms: float) -> dict[str, Any]:
    """Set the budget, press Classify, wait for the answer or the refusal; what the page shows."""
    page.fill("#budget-ms", f"{budget_ms:.3f}")
    page.click("#classify")
    page.wait_for_selector("#answer[data-state=done], #answer[data-state=error]", timeout=ANSWER_TIMEOUT_MS)
    answer = page.locator("#answer")
    shown = {
        "state": answer.get_attribute("data-state"),
        "status": page.inner_text("#answer-status"),
        "exit": answer.get_attribute("data-exit"),
        "transport": answer.get_attribute("data-transport"),
        "rows": page.locator("#exits tbody tr").count(),
        **{field: page.inner_text(f"#answer-{field}") for field in ("label", "confidence", "latency", "stopped")},
    }
    log.info("budget %.3f ms: %s", budget_ms, shown)
    return shown


def drop_file(page: Any, path: Path) -> None:
    """Drop `path` on the drop zone, as a user dragging a file from the desktop would."""
    transfer = page.evaluate_handle(
        """([bytes, name]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type: "image/jpeg" }));
            return transfer;
        }""",
        [list(path.read_bytes()), f"dropped-{path.name}"],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#classify:enabled")


def tightest_budget(server_url: str) -> float:
    floor = httpx.get(server_url + "/v1/model").json()["serving"]["idle_floor_ms"]
    return max(floor * 1.5, floor + 1.0)


def save_screenshot(page: Any) -> None:
    """docs/demo.png, small: the page's PNG reduced to a 256-colour palette."""
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    image.quantize(colors=256).save(SCREENSHOT, optimize=True)


def test_sse_parser_in_the_browser(offline_page: Any, server_url: str) -> None:
    open_demo(offline_page.page, server_url)
    results = offline_page.page.evaluate(RUN_CASES_JS, CASES)
    for case, events in zip(CASES, results, strict=True):
        assert events == case["events"], case["name"]


def test_generous_budget_streams_every_exit_and_a_tight_one_stops_earlier(offline_page: Any, server_url: str) -> None:
    page = offline_page.page
    open_demo(page, server_url)
    num_exits = httpx.get(server_url + "/v1/model").json()["num_exits"]
    page.click("button[data-sample=cat]")
    page.wait_for_selector("#classify:enabled")

    generous = classify(page, GENEROUS_MS)
    assert generous["state"] == "done", generous["status"]
    assert generous["transport"] == "stream"
    assert int(generous["exit"]) == num_exits - 1  # 1000 ms reaches the last exit
    assert generous["rows"] == num_exits  # one row per exit: each streamed, then the final one
    assert generous["label"] not in ("", "–") and "%" in generous["confidence"] and "ms" in generous["latency"]

    for _ in range(5):  # the floor moves as the server measures its front end: read it again if refused
        tight = classify(page, tightest_budget(server_url))
        if "budget_too_small" not in tight["status"]:
            break
    assert tight["state"] == "done", tight["status"]
    assert int(tight["exit"]) < int(generous["exit"])

    # the live chart: the legend lists every exit with figures read from /v1/model
    page.wait_for_function(
        "n => document.querySelectorAll('#profile-legend li').length === n"
        " && [...document.querySelectorAll('#profile-legend li')].every(li => li.textContent.includes('p50'))",
        arg=num_exits,
        timeout=ANSWER_TIMEOUT_MS,
    )
    classify(page, GENEROUS_MS)  # the screenshot shows a full stream
    page.wait_for_timeout(2500)  # one more poll: the profile lines have two points
    save_screenshot(page)
    assert SCREENSHOT.stat().st_size < 300_000


def test_falls_back_to_classify_without_the_stream_route(offline_page: Any, server_url: str) -> None:
    page = offline_page.page
    page.route(  # a server from before the stream route
        "**/v1/classify/stream",
        lambda route: route.fulfill(status=404, json={"error": "not_found", "detail": "Not Found"}),
    )
    open_demo(page, server_url)
    drop_file(page, SAMPLES_DIR / "ship.jpg")
    assert page.inner_text("#preview-name") == "dropped-ship.jpg"
    shown = classify(page, GENEROUS_MS)
    assert shown["state"] == "done", shown["status"]
    assert shown["transport"] == "classify" and shown["rows"] == 1 and shown["exit"] is not None


def test_a_refusal_is_shown_with_its_reason(offline_page: Any, server_url: str) -> None:
    page = offline_page.page
    open_demo(page, server_url)
    page.set_input_files("#file-input", str(SAMPLES_DIR / "dog.jpg"))  # a file of one's own
    page.wait_for_selector("#classify:enabled")
    shown = classify(page, 0.01)  # far below the idle floor: 422 budget_too_small
    assert shown["state"] == "error" and "budget_too_small" in shown["status"]
