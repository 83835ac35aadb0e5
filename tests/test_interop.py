"""
Interoperability: Authlib's OAuth 2.0 client (an independent implementation)
against the real C{twistd oauthd} process over real sockets: client
credentials (Basic and post), password, refresh with rotation, revocation
and introspection, userinfo, and that everything survives a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session

from oauthd.protocol.subjects import is_uid
from oauthd.services.audit import verify
from oauthd.testing import MemoryServer
from tests.daemon import Daemon, seed

PASSWORD = "interop password"
TOKEN = "/api/v1/oauth/token"
REVOKE = "/api/v1/oauth/revoke"
INTROSPECT = "/api/v1/oauth/introspect"
USERINFO = "/api/v1/oauth/userinfo"


async def _setup(server: MemoryServer) -> dict[str, str]:
    await server.add_user("alice", PASSWORD, full_name="Alice", email="alice@example.com")
    app, app_secret = await server.add_client(
        "Interop App", scope="*", grant_types=("client_credentials", "password", "refresh_token"),
    )
    rs, rs_secret = await server.add_client("Resource Server", scope="metrics", introspect=True)
    return {"app": app.id, "app_secret": app_secret, "rs": rs.id, "rs_secret": rs_secret}


def _session(client_id: str, secret: str, **kwargs: Any) -> OAuth2Session:
    session = OAuth2Session(client_id, secret, **kwargs)
    session.trust_env = False  # never through a proxy from the environment
    return session


def test_authlib_client_against_the_daemon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = seed(data, _setup)
    daemon = Daemon(data)
    secrets = [PASSWORD, ids["app_secret"], ids["rs_secret"]]
    try:
        url = daemon.url
        # Client credentials, client_secret_basic (Authlib's default).
        app = _session(ids["app"], ids["app_secret"], scope="metrics photos")
        cc = app.fetch_token(url + TOKEN, grant_type="client_credentials")
        assert cc["token_type"] == "Bearer" and cc["scope"] == "metrics photos"
        assert "refresh_token" not in cc
        secrets.append(cc["access_token"])
        # Client credentials, client_secret_post.
        post = _session(ids["app"], ids["app_secret"], token_endpoint_auth_method="client_secret_post")
        cc_post = post.fetch_token(url + TOKEN, grant_type="client_credentials")
        secrets.append(cc_post["access_token"])
        # Password grant, then userinfo with the token.
        user = _session(ids["app"], ids["app_secret"], scope="openid profile email")
        pw = user.fetch_token(url + TOKEN, username="alice", password=PASSWORD)
        secrets += [pw["access_token"], pw["refresh_token"]]
        claims = user.get(url + USERINFO).json()
        assert {name: claims[name] for name in ("preferred_username", "name", "email")} == {
            "preferred_username": "alice", "name": "Alice", "email": "alice@example.com"}
        assert is_uid(claims["sub"])
        # Refresh: rotated.
        refreshed = user.refresh_token(url + TOKEN, refresh_token=pw["refresh_token"])
        secrets += [refreshed["access_token"], refreshed["refresh_token"]]
        assert refreshed["refresh_token"] != pw["refresh_token"]
        # Introspection by the resource server.
        rs = _session(ids["rs"], ids["rs_secret"])
        info = rs.introspect_token(url + INTROSPECT, token=refreshed["access_token"]).json()
        assert info["active"] is True and info["username"] == "alice" and info["client_id"] == ids["app"]
        assert rs.introspect_token(url + INTROSPECT, token=pw["refresh_token"]).json() == {"active": False}
        # Revocation of the refresh token takes the grant.
        response = user.revoke_token(url + REVOKE, token=refreshed["refresh_token"],
                                     token_type_hint="refresh_token")
        assert response.status_code == 200
        assert rs.introspect_token(url + INTROSPECT, token=refreshed["access_token"]).json() == {"active": False}
        # Raw HTTP details Authlib does not show.
        raw = requests.post(url + TOKEN, data={"grant_type": "client_credentials"},
                            auth=(ids["app"], "wrong"), timeout=10)
        assert raw.status_code == 401
        assert raw.headers["WWW-Authenticate"] == 'Basic realm="oauthd"'
        assert raw.headers["Cache-Control"] == "no-store"
        assert raw.json()["error"] == "invalid_client"
    finally:
        assert daemon.stop() == 0, daemon.output()
    output = daemon.output()
    trail = (data / "audit.log").read_text()
    for secret in secrets:
        assert secret not in output and secret not in trail
    events = [json.loads(line) for line in trail.splitlines()]
    outcomes = {(e["event"], e["outcome"]) for e in events}
    assert {("token.issue", "ok"), ("token.revoke", "ok"), ("token.refuse", "denied")} <= outcomes
    assert verify(str(data / "audit.log")) == (len(events), None)
    # The chain head the daemon logged at stop anchors the file's last line.
    assert f"seq={events[-1]['seq']} chain={events[-1]['chain']}" in output
    # Restart on the same journal: what was acknowledged is still there.
    daemon = Daemon(data)
    try:
        rs = _session(ids["rs"], ids["rs_secret"])
        info = rs.introspect_token(daemon.url + INTROSPECT, token=cc["access_token"]).json()
        assert info["active"] is True and info["client_id"] == ids["app"]
        assert rs.introspect_token(daemon.url + INTROSPECT, token=cc_post["access_token"]).json()["active"]
        for revoked in (pw["access_token"], refreshed["access_token"]):
            assert rs.introspect_token(daemon.url + INTROSPECT, token=revoked).json() == {"active": False}
    finally:
        assert daemon.stop() == 0, daemon.output()
