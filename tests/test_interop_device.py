"""
The device flow as a device lives it: a separate process (tests/device_double.py,
plain urllib, nothing of oauthd) asks the real C{twistd oauthd} for a code,
polls at the advertised interval and honours C{slow_down}, while the test
plays the user in a browser over HTTP: the link the device shows, the
sign-in page, the code confirmed, allowed. The device then has its token.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

from oauthd.testing import MemoryServer
from tests.daemon import REPO, Daemon, seed
from tests.page_helpers import read_page

PASSWORD = "interop password"
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


async def _setup(server: MemoryServer) -> str:
    await server.add_user("alice", PASSWORD)
    client, _ = await server.add_client("Photo Frame", type="public", scope="photos",
                                        grant_types=(GRANT, "refresh_token"))
    return client.id


def _submit(browser: requests.Session, url: str, page: bytes, button: tuple[str, str] | None = None,
            **values: str) -> requests.Response:
    form = read_page(page).form
    response = browser.post(url + form.action, data=form.filled(button, **values),
                            allow_redirects=False, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_a_device_process_gets_its_token_after_the_user_allows_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client_id = seed(data, _setup)
    config = tmp_path / "oauthd.toml"
    config.write_text("device_poll_interval = 1\n")
    daemon = Daemon(data, "--config", str(config))
    device = subprocess.Popen([sys.executable, str(REPO / "tests" / "device_double.py"), daemon.url, client_id],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert device.stdout is not None
        shown = json.loads(device.stdout.readline())
        # The user is slower than the device: it sees pending, misfires,
        # and is told to slow down before the user is done.
        polls = [json.loads(device.stdout.readline())["poll"] for _ in range(2)]
        assert polls == ["authorization_pending", "slow_down"]
        browser = requests.Session()
        browser.trust_env = False
        link = urlsplit(shown["verification_uri_complete"])
        login = browser.get(daemon.url + link.path + "?" + link.query, timeout=10)
        assert "Sign in" in login.text
        entry = _submit(browser, daemon.url, login.content, username="alice", password=PASSWORD)
        assert read_page(entry.content).form.fields["user_code"] == shown["user_code"]
        confirm = _submit(browser, daemon.url, entry.content)
        assert "Photo Frame" in confirm.text and shown["user_code"] in confirm.text
        done = _submit(browser, daemon.url, confirm.content, ("consent", "approve"))
        assert "Device connected" in done.text

        out, _ = device.communicate(timeout=60)
        outcome = json.loads(out.strip().splitlines()[-1])
        assert outcome["token"] is not None, outcome
        assert outcome["token"]["scope"] == "photos" and outcome["token"]["refresh_token"]
        # The misfired poll got slow_down, and the device waited the longer interval after it.
        assert outcome["errors"][:2] == ["authorization_pending", "slow_down"], outcome
        assert outcome["interval"] == 6 and outcome["waits"][-1] >= 6, outcome
    finally:
        if device.poll() is None:
            device.kill()
            device.wait()
        daemon.stop()
