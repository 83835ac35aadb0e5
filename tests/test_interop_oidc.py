"""
OpenID Connect interoperability against the real C{twistd oauthd} process,
with two independent, strict relying parties: Authlib's OpenID Connect
client (Python) and panva's oauth4webapi with jose (Node,
C{tests/interop_js/}). Each runs discovery, code + PKCE with a nonce, ID
token validation against the JWKS, userinfo, refresh, and RP-initiated
logout; the test plays the browser with plain HTTP (the login and consent
forms posted back as a person would).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.integrations.requests_client import OAuth2Session

from oauthd.testing import MemoryServer
from tests.daemon import Daemon, seed
from tests.page_helpers import read_page

PASSWORD = "interop password"
REDIRECT = "https://rp.example/callback"
GOODBYE = "https://rp.example/goodbye"
TOKEN = "/api/v1/oauth/token"
JS = Path(__file__).resolve().parent / "interop_js"
NODE = shutil.which("node")


async def _setup(server: MemoryServer) -> str:
    await server.add_user("alice", PASSWORD, full_name="Alice Liddell", email="alice@example.com")
    client, _ = await server.add_client(
        "Relying Party", type="public", scope="openid profile email",
        grant_types=("authorization_code", "refresh_token"), redirect_uris=(REDIRECT,),
        post_logout_redirect_uris=(GOODBYE,),
    )
    return client.id


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    data = tmp_path / "data"
    client_id = seed(data, _setup)
    running = Daemon(data)
    try:
        yield running, client_id
    finally:
        assert running.stop() == 0, running.output()


class Browser:
    """
    A person's browser: it follows the pages by posting their forms.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False

    def get(self, location: str) -> requests.Response:
        return self.session.get(location, allow_redirects=False, timeout=10)

    def post_form(self, page: requests.Response, button: tuple[str, str] | None = None,
                  **values: str) -> requests.Response:
        form = read_page(page.content).form
        return self.session.post(self.url + form.action, data=form.filled(button, **values),
                                 allow_redirects=False, timeout=10)

    def sign_in(self, location: str) -> str:
        """
        Log in and consent at C{location}, an authorization request; where
        the browser is sent back to.
        """
        login = self.get(location)
        assert login.status_code == 200 and "Sign in" in login.text, login.text
        consent = self.post_form(login, username="alice", password=PASSWORD)
        assert consent.status_code == 200, consent.text
        answer = self.post_form(consent, ("consent", "approve"))
        assert answer.status_code == 302, answer.text
        back = answer.headers["Location"]
        assert back.startswith(REDIRECT + "?")
        return back

    def logged_in(self, location: str) -> bool:
        """
        Whether the browser's session still logs it in at C{location} (an
        authorization request): consent or a redirect, not the login page.
        """
        return "Sign in" not in self.get(location).text


def _log_out(browser: Browser, location: str, state: str) -> None:
    """
    Follow the relying party's logout redirect: the hint names this
    browser's session, so it ends at once and the browser is sent back to
    the registered page with the state.
    """
    answer = browser.get(location)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == GOODBYE
    assert parse_qs(back.query) == {"state": [state]}


@pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated")
def test_authlib_openid_client(daemon: tuple[Daemon, str]) -> None:
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

    running, client_id = daemon
    url = running.url
    status, discovery = running.get_json("/.well-known/openid-configuration")
    assert status == 200 and discovery["issuer"] == url
    client = OAuth2Session(client_id, None, scope="openid profile email", redirect_uri=REDIRECT,
                           code_challenge_method="S256", token_endpoint_auth_method="none")
    client.trust_env = False
    verifier, nonce = generate_token(64), generate_token(20)
    location, _ = client.create_authorization_url(discovery["authorization_endpoint"],
                                                  code_verifier=verifier, nonce=nonce)
    browser = Browser(url)
    back = browser.sign_in(location)
    token = client.fetch_token(discovery["token_endpoint"], authorization_response=back,
                               code_verifier=verifier)

    keys = JsonWebKey.import_key_set(requests.get(discovery["jwks_uri"], timeout=10).json())

    def validated(id_token: str, access_token: str, **params: Any) -> Any:
        claims = jwt.decode(id_token, keys, claims_cls=CodeIDToken,
                            claims_options={"iss": {"essential": True, "value": url}},
                            claims_params={"client_id": client_id, "access_token": access_token, **params})
        claims.validate()
        return claims

    claims = validated(token["id_token"], token["access_token"], nonce=nonce)
    assert claims["sub"] == client.get(discovery["userinfo_endpoint"], timeout=10).json()["sub"]
    assert claims["sub"] != "alice" and claims["sid"]

    refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    again = validated(refreshed["id_token"], refreshed["access_token"])
    assert (again["sub"], again["auth_time"], again["sid"]) == (claims["sub"], claims["auth_time"], claims["sid"])
    assert client.get(discovery["userinfo_endpoint"], timeout=10).status_code == 200

    logout = add_params_to_uri(discovery["end_session_endpoint"], [
        ("id_token_hint", token["id_token"]), ("post_logout_redirect_uri", GOODBYE), ("state", "bye-1"),
        ("client_id", client_id)])
    _log_out(browser, logout, "bye-1")
    assert not browser.logged_in(location)


def _node_ready() -> str | None:
    """
    Why the Node relying party cannot run here, or C{None}.
    """
    if NODE is None:
        return "node is not installed (.ci/run has it; the Node relying party needs it)"
    if not (JS / "node_modules" / "oauth4webapi").is_dir():
        return f"run `npm ci` in {JS} first (.ci/run does)"
    return None


@pytest.mark.skipif(_node_ready() is not None, reason=str(_node_ready()))
def test_oauth4webapi_relying_party(daemon: tuple[Daemon, str]) -> None:
    running, client_id = daemon
    assert NODE is not None
    rp = subprocess.Popen([NODE, str(JS / "rp.mjs"), running.url, client_id, REDIRECT, GOODBYE],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=JS)
    assert rp.stdin is not None and rp.stdout is not None

    def hear(step: str) -> dict[str, Any]:
        line = rp.stdout.readline() if rp.stdout else ""
        if not line:
            rp.wait(10)
            raise AssertionError(f"the relying party stopped before {step}:\n"
                                 f"{rp.stderr.read() if rp.stderr else ''}")
        said: dict[str, Any] = json.loads(line)
        assert said["step"] == step, said
        return said

    try:
        browser = Browser(running.url)
        location = hear("authorize")["url"]
        rp.stdin.write(json.dumps({"callback": browser.sign_in(location)}) + "\n")
        rp.stdin.flush()
        logout = hear("logout")
        done = hear("done")
        assert done["userinfo"]["sub"] == done["sub"] != "alice"
        assert done["userinfo"]["email"] == "alice@example.com" and done["refreshed_id_token"]
        _log_out(browser, logout["url"], logout["state"])
        assert not browser.logged_in(location)
        assert rp.wait(10) == 0
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.wait()
