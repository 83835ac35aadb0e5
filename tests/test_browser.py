"""
A real browser (headless Chromium, driven by Selenium and chromedriver)
through the authorization code flow against the real C{twistd oauthd}
process: password, TOTP code, consent, the redirect back to a tiny local
HTTP server with the code, which the test redeems. Screenshots of the
login, second-factor, consent and error pages, on a phone-sized and a
desktop viewport, go to C{test-artifacts/screenshots/}.

Skipped, saying why, where Chromium or chromedriver or Selenium is absent;
C{.ci/run} installs them.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
import requests

from oauthd.protocol.admin.second_factor import enable
from oauthd.testing import MemoryServer
from tests.daemon import REPO, Daemon, free_port, seed

CHROMIUM = os.environ.get("OAUTHD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OAUTHD_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
VIEWPORTS = {"phone": (390, 844, True), "desktop": (1280, 800, False)}
PASSWORD = "browser password"
VERIFIER = "browser-test-verifier-" + "x" * 40

webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed (pip install selenium)")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"headless Chromium is absent ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class _Callback(http.server.BaseHTTPRequestHandler):
    """
    The client's redirect URI: remembers the query it was sent.
    """

    received: list[str] = []

    def do_GET(self) -> None:
        type(self).received.append(self.path)
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).received.append(self.path + "?" + self.rfile.read(length).decode("ascii"))
        self._answer()

    def _answer(self) -> None:
        body = b"<!DOCTYPE html><title>Gallery</title><p>Signed in.</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def callback() -> Iterator[tuple[str, list[str]]]:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Callback)
    _Callback.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/callback", _Callback.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _screenshots(driver: Any, name: str, dark: bool = False) -> None:
    """
    Save the page as it shows on each viewport (and, if C{dark}, on a phone
    that prefers a dark colour scheme).
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for viewport, (width, height, mobile) in VIEWPORTS.items():
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-{viewport}.png"))
        if dark and mobile:
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
            driver.save_screenshot(str(SCREENSHOTS / f"{name}-{viewport}-dark.png"))
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def test_chromium_logs_in_with_totp_and_consents(tmp_path: Path, browser: Any,
                                                callback: tuple[str, list[str]]) -> None:
    redirect_uri, received = callback

    async def setup(server: MemoryServer) -> tuple[str, str]:
        await server.add_user("alice", PASSWORD, full_name="Alice Liddell")
        client, _ = await server.add_client(
            "Gallery", type="public", scope="openid profile photos albums",
            grant_types=("authorization_code", "refresh_token"), redirect_uris=(redirect_uri,))
        enrollment = await server.store.commit(enable(server.ctx, "alice"))
        return client.id, pyotp.parse_uri(enrollment.uri).secret

    data = tmp_path / "data"
    client_id, secret = seed(data, setup)
    daemon = Daemon(data)
    try:
        wait = WebDriverWait(browser, 15)
        browser.get(daemon.url + "/api/v1/oauth/authorize?" + urlencode({"client_id": "unknown-app"}))
        assert "cannot be completed" in browser.find_element(By.TAG_NAME, "h1").text
        _screenshots(browser, "error")

        browser.get(daemon.url + "/api/v1/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid profile photos albums", "state": "xyz",
            "code_challenge": _challenge(VERIFIER), "code_challenge_method": "S256",
        }))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        _screenshots(browser, "login")
        browser.find_element(By.ID, "username").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys("not the password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        alert = wait.until(lambda d: d.find_elements(By.ID, "form-error"))[0]
        assert "not right" in alert.text
        _screenshots(browser, "login-wrong-password")
        assert browser.find_element(By.ID, "username").get_attribute("value") == "alice"
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        wait.until(lambda d: d.find_elements(By.ID, "otp"))
        _screenshots(browser, "second-factor")
        browser.find_element(By.ID, "otp").send_keys(pyotp.TOTP(secret).now())
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[value=approve]"))
        assert "Gallery" in browser.find_element(By.TAG_NAME, "h1").text
        _screenshots(browser, "consent", dark=True)
        browser.find_element(By.CSS_SELECTOR, "button[value=approve]").click()

        wait.until(lambda d: d.current_url.startswith(redirect_uri))
        answers = [path for path in received if path.startswith("/callback?")]
        assert len(answers) == 1, received
        query = parse_qs(urlsplit(answers[0]).query)
        assert (query["state"], query["iss"]) == (["xyz"], [daemon.url])
        tokens = requests.post(daemon.url + "/api/v1/oauth/token", data={
            "grant_type": "authorization_code", "code": query["code"][0], "client_id": client_id,
            "redirect_uri": redirect_uri, "code_verifier": VERIFIER,
        }, timeout=10)
        assert tokens.status_code == 200, tokens.text
        assert tokens.json()["access_token"]

        # form_post: the static script posts the answer at once, under the
        # page's CSP; without script, the button does.
        form_post = daemon.url + "/api/v1/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "photos", "state": "posted", "response_mode": "form_post",
            "code_challenge": _challenge(VERIFIER), "code_challenge_method": "S256",
        })
        # A public client's loopback redirect URI: its consent is asked every
        # time (RFC 8252 section 8.6).
        def approve() -> None:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[value=approve]"))[0].click()

        received.clear()
        browser.get(form_post)
        approve()
        wait.until(lambda d: any(path.startswith("/callback?code=") for path in received))
        assert [path for path in received if "state=posted" in path], received
        received.clear()
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.get(form_post)
        approve()
        button = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#form-post button"))[0]
        assert not [path for path in received if path.startswith("/callback")], received
        _screenshots(browser, "form-post-without-script")
        button.click()
        wait.until(lambda d: any(path.startswith("/callback?code=") for path in received))
    finally:
        assert daemon.stop() == 0, daemon.output()
