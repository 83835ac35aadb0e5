"""
Interoperability of the authorization code flow: Authlib's OAuth 2.0
client (an independent implementation) runs code + PKCE (S256) against the
real C{twistd oauthd} process, the test playing the browser with plain HTTP
posts through the login and consent pages; then it refreshes and revokes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.security import generate_token

from oauthd.protocol.subjects import is_uid
from oauthd.testing import MemoryServer
from tests.daemon import Daemon, seed
from tests.page_helpers import read_page

PASSWORD = "interop password"
REDIRECT = "https://gallery.example/callback"
AUTHORIZE = "/api/v1/oauth/authorize"
TOKEN = "/api/v1/oauth/token"
REVOKE = "/api/v1/oauth/revoke"
USERINFO = "/api/v1/oauth/userinfo"


async def _setup(server: MemoryServer) -> str:
    await server.add_user("alice", PASSWORD, full_name="Alice", email="alice@example.com")
    client, _ = await server.add_client(
        "Gallery", type="public", scope="openid profile photos",
        grant_types=("authorization_code", "refresh_token"), redirect_uris=(REDIRECT,),
    )
    return client.id


def _post_form(browser: requests.Session, url: str, page: bytes, **values: str) -> requests.Response:
    form = read_page(page).form
    fields = {**form.fields, **values}
    return browser.post(url + form.action, data=fields, allow_redirects=False, timeout=10)


def test_authlib_code_flow_with_pkce_against_the_daemon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client_id = seed(data, _setup)
    daemon = Daemon(data)
    try:
        url = daemon.url
        client = OAuth2Session(client_id, None, scope="openid profile photos", redirect_uri=REDIRECT,
                               code_challenge_method="S256", token_endpoint_auth_method="none")
        client.trust_env = False
        verifier = generate_token(64)
        location, state = client.create_authorization_url(url + AUTHORIZE, code_verifier=verifier)

        browser = requests.Session()
        browser.trust_env = False
        login = browser.get(location, allow_redirects=False, timeout=10)
        assert login.status_code == 200 and "Sign in" in login.text
        consent = _post_form(browser, url, login.content, username="alice", password=PASSWORD)
        assert consent.status_code == 200 and "Gallery" in consent.text, consent.text
        assert ("consent", "approve") in read_page(consent.content).form.buttons
        answer = _post_form(browser, url, consent.content, consent="approve")
        assert answer.status_code == 302, answer.text
        back = answer.headers["Location"]
        assert back.startswith(REDIRECT + "?")

        token = client.fetch_token(url + TOKEN, authorization_response=back, code_verifier=verifier)
        assert token["token_type"] == "Bearer" and set(token["scope"].split()) == {"openid", "profile", "photos"}
        claims = client.get(url + USERINFO, timeout=10).json()
        assert is_uid(claims["sub"]) and claims["preferred_username"] == "alice"

        refreshed = client.refresh_token(url + TOKEN, refresh_token=token["refresh_token"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert client.get(url + USERINFO, timeout=10).status_code == 200

        revoked = client.revoke_token(url + REVOKE, token=refreshed["refresh_token"],
                                      token_type_hint="refresh_token")
        assert revoked.status_code == 200
        assert client.get(url + USERINFO, timeout=10).status_code == 401

        # The code was used once; a second redemption is refused.
        code = parse_qs(urlsplit(back).query)["code"][0]
        replay = browser.post(url + TOKEN, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id,
        }, timeout=10)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        assert state
    finally:
        assert daemon.stop() == 0, daemon.output()
