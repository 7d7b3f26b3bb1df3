"""The inspection page (``GET /ui``): served self-contained, and rendering a real feed in headless Chromium.

The browser is Debian's ``chromium`` + ``chromium-driver`` (no browser download is possible here) driven by
Selenium; the service is the real app (``serving.app.create_app``) on the ``served_home`` fixture, run by
uvicorn in a background thread on a free port, so the page talks to real Feast, Milvus Lite and the trained
models exactly as a client would.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from feed.config import FeedPaths
from pipelines.schemas import DEVICE_TYPES
from serving import ui
from serving.schemas import TaskProbabilities

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
STARTUP_TIMEOUT_S = 180.0  # the lifespan loads Feast, Milvus and both models
RESULT_TIMEOUT_S = 120.0  # first feed request: cold caches, maybe a cold-start encode
ELEMENT_IDS = (
    "member-select",
    "member-input",
    "show",
    "profile",
    "history",
    "feed-table",
    "timings",
    "fallbacks",
    "error",
)

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no headless browser: Debian's chromium is not installed at {CHROMIUM} "
    "(apt-get install chromium chromium-driver; scripts/run_tests.sh does it when run as root)",
)
T = TypeVar("T")


# ---------------------------------------------------------------- the page as served (no browser, no service)


@pytest.fixture(scope="module")
def ui_only_client() -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(ui.router)
    with TestClient(app) as client:
        yield client


def test_page_is_served_self_contained(ui_only_client: TestClient) -> None:
    response = ui_only_client.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    for element_id in ELEMENT_IDS:
        assert f'id="{element_id}"' in html, element_id
    # Offline machines: nothing may be fetched from elsewhere (no CDN script, stylesheet, font or image).
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert all(link.startswith(("data:", "#")) for link in links), links
    assert "url(" not in html
    assert "@import" not in html
    # The contract's choices are injected from the same constants the API validates with.
    blob = re.search(r'<script id="ui-config" type="application/json">(.*?)</script>', html, re.S)
    assert blob is not None
    config = json.loads(blob.group(1))
    assert config["device_types"] == list(DEVICE_TYPES)
    assert config["tasks"] == list(TaskProbabilities.model_fields)
    assert (config["k_default"], config["k_max"]) == (50, 500)
    assert ui.CONFIG_PLACEHOLDER not in html


def test_page_stays_out_of_the_api_document(ui_only_client: TestClient) -> None:
    assert "/ui" not in ui_only_client.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------- the real service in a real browser


@pytest.fixture(scope="module")
def live_url(served_home: FeedPaths) -> Iterator[str]:
    """The real app, served by uvicorn from a background thread on a free loopback port."""
    from serving.app import create_app
    from serving.settings import ServingSettings

    # The page only reads; served_home is shared read-only, so no impression batches are written into it.
    app = create_app(ServingSettings(home=served_home.home, log_impressions=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    host, port = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            sock.close()
            pytest.fail("the service exited during start-up (lifespan failed): see the captured log")
        if time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"the service did not start within {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    yield f"http://{host}:{port}"
    server.should_exit = True
    thread.join(timeout=60)
    sock.close()
    assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs (it would try to download a driver).
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T | None], timeout: float, what: str) -> T:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        error = driver.find_element("id", "error").text
        pytest.fail(
            f"timed out after {timeout:.0f} s waiting for {what}; #error: {error!r}; "
            f"console: {console(driver)}"
        )


def console(driver: WebDriver) -> list[str]:
    return [f"{e['level']} {e['message']}" for e in driver.get_log("browser")]


def error_shown(driver: WebDriver) -> WebElement | None:
    error = driver.find_element("id", "error")
    return error if "shown" in (error.get_attribute("class") or "").split() else None


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(f"{url}/ui")

    def member_list_loaded(d: WebDriver) -> bool:
        loaded = d.find_element("id", "member-select").get_attribute("data-loaded") == "true"
        return loaded or error_shown(d) is not None

    wait_for(driver, member_list_loaded, 30, "the member list")
    assert not error_shown(driver), driver.find_element("id", "error").text


def feed_rows_or_error(driver: WebDriver) -> list[WebElement] | None:
    if (error := error_shown(driver)) is not None:
        pytest.fail(f"the page shows an error instead of a feed: {error.text!r}")
    return driver.find_elements("css selector", "#feed-table tr.feed-row") or None


def member_with_history(url: str, member_ids: list[str], tries: int = 50) -> tuple[str, dict]:
    """The first listed member with an engaged history (so the page has history rows and history "why"s),
    with its member view as the JSON API returns it."""
    for member in member_ids[:tries]:
        with urllib.request.urlopen(f"{url}/v1/members/{member}", timeout=30) as response:
            view = json.load(response)
        if view["found"] and view["history"]:
            return member, view
    pytest.fail(f"none of the first {tries} listed members has an engaged history")


@pytest.mark.integration
@needs_chromium
def test_page_renders_a_feed(browser: WebDriver, live_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    open_page(browser, live_url)
    picker = Select(browser.find_element("id", "member-select"))
    member_ids = [o.get_attribute("value") for o in picker.options if o.get_attribute("value")]
    assert member_ids, "the member list is empty"
    member, view = member_with_history(live_url, member_ids)
    picker.select_by_value(member)
    assert browser.find_element("id", "member-input").get_attribute("value") == member
    k = browser.find_element("id", "k")
    k.clear()
    k.send_keys("10")
    Select(browser.find_element("id", "device-select")).select_by_value("desktop_web")
    browser.find_element("id", "show").click()

    rows = wait_for(browser, feed_rows_or_error, RESULT_TIMEOUT_S, "feed rows")
    browser.save_screenshot(str(tmp_path / "ui_feed.png"))  # kept under --basetemp for a look
    assert 1 <= len(rows) <= 10
    post_ids = [int(row.get_attribute("data-post-id") or "0") for row in rows]
    assert all(p > 0 for p in post_ids)
    assert len(set(post_ids)) == len(post_ids), "a post is shown twice"
    positions = [int(row.find_element("css selector", "td").text) for row in rows]
    assert positions == list(range(1, len(rows) + 1))
    for row in rows:
        assert row.find_element("css selector", ".why-text").text.strip() not in ("", "–")
        assert row.find_element("css selector", "td.score").text.strip()

    bars = browser.find_elements("css selector", "#timings .timing .timing-bar")
    assert bars, "no per-stage timing bars"
    assert all(ms.text.endswith(" ms") for ms in browser.find_elements("css selector", "#timings .ms"))
    assert browser.find_element("id", "request-id").text.strip()
    assert browser.find_elements("css selector", "#fallbacks .badge")
    profile = browser.find_element("id", "profile").text
    assert member in profile
    if view["headline"]:
        assert view["headline"] in profile
    # The engaged history is the service's, row for row.
    history = browser.find_elements("css selector", "#history tr[data-post-id]")
    assert [int(row.get_attribute("data-post-id") or "0") for row in history] == [
        h["post_id"] for h in view["history"]
    ]
    assert not error_shown(browser)
    page_errors = [line for line in console(browser) if "javascript" in line.lower() or "Uncaught" in line]
    assert not page_errors, page_errors
    # The page keeps the choice in its address, so a feed can be shared as a link.
    assert f"member_id={member}" in browser.current_url
    assert "device_type=desktop_web" in browser.current_url


@pytest.mark.integration
@needs_chromium
def test_invalid_member_shows_a_readable_error(browser: WebDriver, live_url: str) -> None:
    open_page(browser, live_url)
    box = browser.find_element("id", "member-input")
    box.clear()
    box.send_keys("0")
    browser.find_element("id", "show").click()

    error = wait_for(browser, error_shown, RESULT_TIMEOUT_S, "the error box")
    text = error.text
    assert "422" in text
    assert "member_id" in text
    assert "[object Object]" not in text
    assert not browser.find_elements("css selector", "#feed-table tr.feed-row")
    assert browser.find_element("id", "show").is_enabled()  # the page is usable again


@pytest.mark.integration
@needs_chromium
def test_service_unreachable_is_shown_not_blank(browser: WebDriver, live_url: str) -> None:
    open_page(browser, live_url)
    box = browser.find_element("id", "member-input")
    box.clear()
    box.send_keys("1")
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        browser.find_element("id", "show").click()
        error = wait_for(browser, error_shown, 30, "the error box")
        assert "did not answer" in error.text
    finally:
        browser.delete_network_conditions()
