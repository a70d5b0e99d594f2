"""The status page in a real browser: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver, against a real ``router serve``.

It asserts what a person sees: the failed backup's row, in words and
colour; the page updating itself, without a reload, after a new event; a
backup's recent runs one click away; and a phone-sized window without
sideways scrolling. Screenshots go to the test's temporary directory (and,
with ROUTER_SCREENSHOTS=DIR, there too: docs/status-page.png is one).

Without Chromium the test is skipped, unless ROUTER_REQUIRE_BROWSER is set
(CI sets it: there a skip is a failure).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import call, wait_until
from sinks import free_port
from test_status import end_source

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REASON = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
if not (CHROMIUM.exists() and DRIVER.exists()):
    if os.environ.get("ROUTER_REQUIRE_BROWSER"):
        raise RuntimeError(f"ROUTER_REQUIRE_BROWSER is set, but the browser is missing: {REASON}")
    pytest.skip(REASON, allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

RULES = """
rule "log" on any log "{{ event }}"
expect EndScript where script == "Weekly" every 7d
  log "Weekly is late"
"""
DATE = "11/28/2026 2:00 AM"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        "--window-size=1200,900",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=str(DRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def post(port: int, event: str, *args: str, host: str = "backup01") -> None:
    status, reply = call(
        port, "POST", "/events", {"event": event, "args": list(args), "host": host}
    )
    assert status == 200, reply


def run_of(port: int, script: str, sources: list[tuple[str, int, str]]) -> None:
    post(port, "StartScript", script, DATE, "")
    for source, code, message in sources:
        post(port, *end_source(script, source, code, message))
    failed = sum(bool(code) for _, code, _ in sources)
    post(port, "EndScript", script, str(failed), "-519" if failed else "0", "done")


def shown(driver: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds ("" if none yet): found
    afresh, since the page replaces its body as it refreshes."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 1000
    keep = os.environ.get("ROUTER_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / name)
    return path


def test_a_person_sees_the_failed_backup_and_the_page_keeps_itself_current(
    tmp_path: Path, router_at: Any, browser: Any
) -> None:
    port = free_port()
    router = router_at(RULES, f'listen = "127.0.0.1:{port}"').start()
    run_of(port, "Nightly", [("ws1/C", 0, "successful"), ("ws2/C", -519, "network lost")])
    run_of(port, "Daily", [("ws1/D", 0, "successful"), ("files/E", 0, "successful")])

    # The expectation's window is armed at the service's first tick.
    wait_until(
        lambda: len(call(port, "GET", "/api/status")[1]["scripts"]) == 3, "the Weekly window"
    )
    browser.get(f"http://127.0.0.1:{port}/")
    assert browser.title.startswith("Backups seen by")
    nightly = browser.find_element(By.CSS_SELECTOR, 'tr[data-script="Nightly"]')
    state = nightly.find_element(By.CSS_SELECTOR, ".state")
    assert state.text == "FAILED"  # in words...
    assert state.value_of_css_property("color") == "rgba(176, 0, 32, 1)"  # ...and in red
    assert "ws2/C: network lost" in nightly.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#scripts tbody tr")
    assert [r.get_attribute("data-script") for r in rows] == ["Nightly", "Weekly", "Daily"]
    assert rows[1].find_element(By.CSS_SELECTOR, ".state").text == "never ran"
    assert "1 failed" in browser.find_element(By.CSS_SELECTOR, ".chips").text
    screenshot(browser, tmp_path, "status-page.png")

    # A new event: the page shows it by itself, without reloading (a wall
    # screen's page, refreshed every second).
    browser.get(f"http://127.0.0.1:{port}/?refresh=1")
    browser.execute_script("window.stayedOnThePage = true;")
    run_of(port, "Weekly", [("mail/F", -1101, "file in use")])
    weekly = 'tr[data-host="backup01"][data-script="Weekly"]'
    wait_until(lambda: "mail/F: file in use" in shown(browser, weekly), "the Weekly run shown")
    assert browser.execute_script("return window.stayedOnThePage;") is True
    assert "2 failed" in shown(browser, ".chips")

    # One click to the backup's recent runs, with their failed sources.
    browser.find_element(By.LINK_TEXT, "backup01 / Nightly").click()
    wait_until(lambda: browser.title.startswith("Recent runs of"), "the runs page")
    assert "ws2/C: network lost (-519)" in browser.find_element(By.ID, "runs").text

    # On a phone: everything readable without scrolling sideways.
    browser.set_window_size(390, 844)
    browser.get(f"http://127.0.0.1:{port}/")
    width = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )
    assert width[0] <= width[1], width
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-script="Nightly"] .state').is_displayed()
    screenshot(browser, tmp_path, "status-page-phone.png")
    assert router.stop() == 0
