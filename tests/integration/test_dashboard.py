"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium
through Debian's chromedriver, against a node on the private Tor network.

The browser opens the page as soon as the node's API answers, while the node's
own tor is still bootstrapping: it signs in with the token, watches the Tor
bootstrap bar until 100% (the page also lists the node's earlier bootstrap
events, replayed by the event stream, so the whole way from 0% is checked even
when tor was quicker than the page), sees a peer added through the API appear in the peer
list and its ``peer_changed`` event arrive on the WebSocket, and ends with a
screenshot (kept under the pytest temporary directory) and no console error.

Chromium reaches nothing beyond loopback: every non-loopback request goes to a
proxy on a closed loopback port, name resolution answers "not found" for every
host, and component updates, background networking, sync, safe browsing and
first-run fetches are off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.testing import NodeProcess, TorNetwork, free_ports, start_node, wait_for

from .test_api_tor import _api_node, _api_port, api_up, call

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN_KEY = "aegis-hidden.token"  # app.js


def chromium_options(profile: Path, dead_port: int) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--window-size=1280,1700",
            "--no-first-run", "--no-default-browser-check", "--no-pings",
            "--disable-component-update", "--disable-background-networking",
            "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            "--disable-breakpad", "--metrics-recording-only", "--dns-prefetch-disable",
            "--disable-features=OptimizationHints,MediaRouter,Translate,"
            "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
            "SafeBrowsingEnhancedProtection",
            # everything but loopback (bypassed by default) to a port nobody listens on
            f"--proxy-server=http://127.0.0.1:{dead_port}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {
        "download.default_directory": str(profile.parent / "downloads"),
        "download.prompt_for_download": False})
    return options


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("Debian's chromium and chromium-driver are needed (make setup installs them)")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager is skipped anyway
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    dead_port = free_ports(1)[0]  # free, and nothing will listen on it
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service,
                              options=chromium_options(tmp_path / "profile", dead_port))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def node(tor_network: TorNetwork, tmp_path: Path) -> Iterator[NodeProcess]:
    n = _api_node(tor_network, "dash", tmp_path)
    start_node(n, api=True)
    try:
        yield n
    finally:
        n.stop()


def _attr(driver: Any, css: str, name: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    try:
        value = driver.find_element(By.CSS_SELECTOR, css).get_attribute(name)
    except (NoSuchElementException, StaleElementReferenceException):
        return None
    return None if value is None else str(value)


def test_dashboard_in_chromium(browser: Any, node: NodeProcess, tmp_path: Path) -> None:
    # (the browser is up before the node starts, so the page opens the moment the
    # API answers, while the node's tor is starting)
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    # the API answers before the node's tor has bootstrapped
    wait_for(lambda: api_up(node), 60, "the node's API", [node], interval=0.1)
    token = (node.data_dir / "api_token").read_text().strip()
    base = f"http://127.0.0.1:{_api_port(node)}/"

    browser.get(base)
    assert browser.find_element(By.ID, "login-panel").is_displayed()
    assert not browser.find_element(By.ID, "dashboard").is_displayed()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: browser.find_element(By.ID, "dashboard").is_displayed(), 15,
             "the dashboard after sign-in", [node])
    assert token not in browser.current_url
    assert browser.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") == token
    assert browser.find_element(By.ID, "node-onion").text == node.onion

    # the Tor bootstrap bar, as the page shows it, until 100%
    seen: list[int] = []

    def bar_at_100() -> bool:
        value = _attr(browser, "#progress-tor", "data-percent")
        if value is not None and (not seen or seen[-1] != int(value)):
            seen.append(int(value))
        return bool(seen) and seen[-1] == 100

    wait_for(bar_at_100, 150, "the Tor bootstrap bar to reach 100%", [node], interval=0.2)
    wait_for(lambda: browser.find_element(By.ID, "live").text == "events: live", 15,
             "the event stream to connect", [node])

    def values(attribute: str) -> list[int]:
        raw = _attr(browser, "#transport-tor .seen", attribute) or ""
        return [int(v) for v in raw.split(",") if v]

    # what the bar showed, and with the node's earlier tor_bootstrap events (replayed
    # by the event stream) the whole way from the node's start
    bar, whole = values("data-bar"), values("data-values")
    print(f"\nTor bootstrap bar: read by the test {seen}, shown by the page {bar}, "
          f"with the node's earlier events {whole}")
    assert bar[-1] == 100 and whole[-1] == 100
    assert whole[0] < 100 and len(set(whole)) >= 3, whole  # it moved, step by step
    assert "ready" in browser.find_element(By.CSS_SELECTOR, "#transport-tor .ready-text").text

    # a peer added through the API: its event arrives live, the list shows it
    peer = onion_address_from_public_key(os.urandom(32))
    code, body = call(node, "POST", "/api/network/peers", {"action": "add", "peer_address": peer})
    assert code == 200, body
    wait_for(lambda: any(peer in e.text for e in browser.find_elements(
        By.CSS_SELECTOR, "#events li[data-type='peer_changed']")), 15,
        "the peer_changed event in the page", [node])
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"#peers tr[data-peer='{peer}']"),
                   15, "the new peer in the peer list", [node])[0]
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == peer and cells[1] in ("new", "disconnected") and cells[3] == "tor", cells
    assert cells[2].strip() == "0.50", cells  # a new peer's reputation

    # the mixing profile, the emergency state and the feature-detected panels are drawn
    assert "profile" in browser.find_element(By.ID, "mixing").text
    assert "isolated\nno" in browser.find_element(By.ID, "counts").text
    for panel in ("topics-panel", "dht-panel", "audit-panel"):
        wait_for(lambda panel=panel: _attr(browser, f"#{panel}", "data-available"), 20,
                 f"the {panel} to be detected", [node])

    # a short privacy audit run from the page: its checks, then its HTML report saved
    if _attr(browser, "#audit-panel", "data-available") == "yes":
        browser.execute_script("document.getElementById('audit-seconds').value = '2';"
                               "document.querySelector('#audit-form button').click();")
        wait_for(lambda: browser.find_elements(By.ID, "audit-report"), 120,
                 "the audit to be done", [node])
        text = browser.find_element(By.ID, "audit-panel").text
        assert "state\ndone" in text and "result\n" in text, text
        browser.find_element(By.ID, "audit-report").click()
        downloads = tmp_path / "downloads"
        report = wait_for(lambda: [p for p in downloads.glob("audit-*.html")], 30,
                          "the audit report to be saved", [node])[0]
        assert "<html" in report.read_text(errors="replace").lower()
        print(f"audit report saved by the page: {report}")
    else:
        print("the node has no mixing layer: no audit to run from the page")

    # a reload keeps the session (sessionStorage), without typing the token again
    browser.refresh()
    wait_for(lambda: browser.find_element(By.ID, "dashboard").is_displayed(), 15,
             "the dashboard after a reload", [node])
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"#peers tr[data-peer='{peer}']"),
             15, "the peer list after a reload", [node])

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")
    print(f"from the node's start to the screenshot: {time.monotonic() - started:.1f}s")

    # "Forget token": back to the sign-in form, nothing of the node left in the page
    browser.find_element(By.ID, "logout").click()
    assert browser.find_element(By.ID, "login-panel").is_displayed()
    assert browser.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#events li, #peers td") == []
    assert node.onion not in browser.page_source

    logs = browser.get_log("browser")
    errors = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert errors == [], errors
