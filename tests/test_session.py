"""
PhotoPrism's login sessions: C{POST /api/v1/session} and C{DELETE
/api/v1/session}.
"""

from __future__ import annotations

from typing import Any

from oauthd.protocol import sessions

from oauthd.protocol import tokens
from oauthd.state.entities import SESSION
from tests.oauth_helpers import PASSWORD, SESSION as SESSION_PATH, USERINFO, OAuthCase


class SessionTests(OAuthCase):
    config_values = {"session_ttl": 7200}

    def login(self, password: str = PASSWORD, username: str = "alice", **kwargs: Any) -> Any:
        return self.post(SESSION_PATH, json_body={"username": username, "password": password}, **kwargs)

    def test_login_with_password(self) -> None:
        """
        PhotoPrism's JSON login gives a short-lived full-scope session token
        in PhotoPrism's response shape.
        """
        reply = self.login()
        assert reply.code == 200, reply
        body = reply.body
        assert body["status"] == "success" and body["token_type"] == "Bearer"
        assert body["id"] == body["access_token"] and tokens.is_access_token(body["access_token"])
        assert body["session_id"] == tokens.session_id(body["access_token"])
        assert (body["expires_in"], body["scope"], body["provider"]) == (7200, "*", "local")
        assert body["user"] == {"Name": "alice", "DisplayName": "Alice Liddell",
                                "Email": "alice@example.com", "Role": "user"}
        token = self.server.authenticate_token(body["access_token"])
        assert token is not None and token.kind == SESSION and token.client_id == ""
        self.clock.advance(7200)
        assert self.server.authenticate_token(body["access_token"]) is None

    def test_login_with_form_and_sessions_alias(self) -> None:
        reply = self.post("/api/v1/sessions", {"username": "alice", "password": PASSWORD})
        assert reply.code == 200, reply

    def test_login_with_app_password(self) -> None:
        app, _ = self.app_password(scope="webdav openid sessions", lifetime=600)
        body = self.login(app).body
        assert (body["scope"], body["expires_in"], body["provider"]) == (
            "openid sessions webdav", 600, "application")

    def test_wrong_credentials(self) -> None:
        """
        Every failed login is a 401 in PhotoPrism's shape, saying the same
        whether the user exists or not; a body that is not a JSON object is
        a 400.
        """
        for reply in (self.login("wrong"), self.login(username="nobody"),
                      self.post(SESSION_PATH, json_body={"username": "alice"})):
            self.assert_photoprism_error(reply, 401, "invalid_grant")
            assert reply.body["code"] == 401 and reply.body["error"] == "Invalid credentials"
        assert self.login("wrong").body["details"] == self.login(username="nobody").body["details"]
        self.assert_photoprism_error(self.post(SESSION_PATH, json_body=["alice"]), 400, "invalid_request")

    def test_logout(self) -> None:
        access = self.login().body["access_token"]
        reply = self.request("DELETE", SESSION_PATH, headers={"X-Session-ID": access})
        assert reply.body == {"status": "deleted", "session_id": tokens.session_id(access)}
        assert self.server.authenticate_token(access) is None
        self.assert_photoprism_error(self.request("DELETE", SESSION_PATH, headers={"X-Session-ID": access}),
                          401, "invalid_token")

    def test_logout_naming_the_session(self) -> None:
        for name in ("session_id", "handle"):
            access = self.login().body["access_token"]
            token = self.server.authenticate_token(access)
            assert token is not None
            reference = tokens.session_id(access) if name == "session_id" else token.handle
            other = self.login().body["access_token"]
            self.assert_photoprism_error(self.request("DELETE", f"{SESSION_PATH}/{reference}",
                                           headers={"X-Auth-Token": other}), 403, "access_denied")
            reply = self.request("DELETE", f"/api/v1/sessions/{reference}", headers={"X-Auth-Token": access})
            assert reply.code == 200, reply
            assert self.server.authenticate_token(access) is None

    def test_logout_with_other_kinds_of_token(self) -> None:
        """
        PhotoPrism (C{session_delete.go}) lets any token end itself here if
        its scope allows C{sessions}; without that scope it is refused and
        stays live.
        """
        narrow, _ = self.app_password(scope="webdav")
        self.assert_photoprism_error(self.request("DELETE", SESSION_PATH, headers={"X-Auth-Token": narrow}),
                          403, "insufficient_scope")
        assert self.server.authenticate_token(narrow) is not None
        full, _ = self.app_password()
        access = self.password_grant().body["access_token"]
        for token in (full, access):
            reply = self.request("DELETE", SESSION_PATH, headers={"X-Auth-Token": token})
            assert reply.body == {"status": "deleted", "session_id": tokens.session_id(token)}, reply
            assert self.server.authenticate_token(token) is None
        reply = self.request("DELETE", SESSION_PATH)
        assert (reply.code, reply.body) == (401, {}), reply

    def test_sessions_per_user_are_capped(self) -> None:
        first = self.login().body["access_token"]
        for _ in range(sessions.MAX_SESSIONS):
            self.login()
        assert self.server.authenticate_token(first) is None
        live = [t for t in self.server.state.user_tokens("alice", self.clock.seconds()) if t.kind == SESSION]
        assert len(live) == sessions.MAX_SESSIONS

    def test_session_token_works_at_userinfo(self) -> None:
        access = self.login().body["access_token"]
        assert self.request("GET", USERINFO, headers={"X-Session-ID": access}).body["sub"] == self.server.state.users["alice"].uid
