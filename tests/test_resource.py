"""
Tokens on the resource side (RFC 6750): how a bearer token is presented and
checked, with userinfo (OpenID Connect Core 5.3) as the resource.
"""

from __future__ import annotations

from typing import Any

from oauthd.protocol import tokens
from oauthd.protocol.admin.users import update_user
from oauthd.protocol.subjects import is_uid
from tests.oauth_helpers import USERINFO, OAuthCase, bearer


class BearerTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.access = self.password_grant(scope="openid profile email").body["access_token"]

    def userinfo(self, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.request("GET", USERINFO, headers=headers, **kwargs)

    def test_every_presentation_works(self) -> None:
        """
        Authorization: Bearer (any case of the scheme), X-Auth-Token and
        PhotoPrism's legacy X-Session-ID.
        """
        for headers in (bearer(self.access), {"Authorization": "bearer " + self.access},
                        {"X-Auth-Token": self.access}, {"X-Session-ID": self.access}):
            reply = self.userinfo(headers)
            assert (reply.code, reply.body["sub"]) == (200, self.server.state.users["alice"].uid), (headers, reply)

    def test_photoprism_precedence(self) -> None:
        """
        X-Auth-Token wins over X-Session-ID, which wins over Authorization.
        """
        bad = "0" * 48
        assert self.userinfo({"X-Auth-Token": self.access, "X-Session-ID": bad,
                              "Authorization": "Bearer " + bad}).code == 200
        assert self.userinfo({"X-Session-ID": self.access, "Authorization": "Bearer " + bad}).code == 200
        self.assert_error(self.userinfo({"X-Auth-Token": bad, "X-Session-ID": self.access}),
                          401, "invalid_token")

    def test_missing_token_gets_a_bare_challenge(self) -> None:
        for headers in ({}, {"Authorization": "Basic eDp5"}, {"X-Auth-Token": " "}):
            reply = self.userinfo(headers)
            assert (reply.code, reply.body) == (401, {}), reply
            assert reply.header("www-authenticate") == 'Bearer realm="oauthd"'

    def test_bad_tokens_get_invalid_token(self) -> None:
        """
        Malformed, unknown, expired, revoked: 401 with error="invalid_token"
        in the challenge.
        """
        revoked = self.password_grant().body["access_token"]
        self.successResultOf(self.server.revoke(self.server.authenticate_token(revoked)))  # type: ignore[arg-type]
        for token in ("", "x", "0" * 48, "A" * 48, self.access + "0", "z" * 5000, revoked,
                      "Bearer " + self.access, self.access.upper()):
            reply = self.userinfo(bearer(token))
            assert reply.code == 401, (token[:60], reply)
            assert reply.body["error"] == "invalid_token"
            assert 'error="invalid_token"' in (reply.header("www-authenticate") or ""), reply
        self.clock.advance(self.client.access_ttl)
        self.assert_error(self.userinfo(bearer(self.access)), 401, "invalid_token")

    def test_repeated_headers_are_invalid_request(self) -> None:
        for name in ("Authorization", "X-Auth-Token", "X-Session-ID"):
            value = ("Bearer " if name == "Authorization" else "") + self.access
            reply = self.userinfo({name: [value, value]})  # type: ignore[dict-item]
            self.assert_error(reply, 400, "invalid_request")

    def test_app_passwords_and_sessions_are_bearer_tokens(self) -> None:
        app, _ = self.app_password(scope="openid")
        assert self.userinfo({"X-Auth-Token": app}).code == 200
        session = self.post("/api/v1/session", json_body={"username": "alice", "password": self.password()}).body
        assert self.userinfo({"X-Session-ID": session["access_token"]}).code == 200

    def password(self) -> str:
        from tests.oauth_helpers import PASSWORD

        return PASSWORD


class UserinfoTests(OAuthCase):
    def claims(self, scope: str) -> Any:
        access = self.password_grant(scope=scope).body["access_token"]
        return self.request("GET", USERINFO, headers=bearer(access))

    def test_claims_follow_scope(self) -> None:
        """
        C{sub} is the user's subject id, not the name; each scope adds its
        claims (OpenID Connect Core section 5.4).
        """
        alice = self.server.state.users["alice"]
        assert is_uid(alice.uid)
        assert self.claims("openid").body == {"sub": alice.uid}
        profile = {"preferred_username": "alice", "name": "Alice Liddell", "updated_at": alice.created_at}
        assert self.claims("openid profile").body == {"sub": alice.uid, **profile}
        email = {"email": "alice@example.com", "email_verified": False}
        assert self.claims("openid email").body == {"sub": alice.uid, **email}
        assert self.claims("openid address").body == {"sub": alice.uid}
        assert self.claims("*").body == {"sub": alice.uid, **profile, **email}

    def test_profile_fields_set_by_an_admin(self) -> None:
        """
        The fields C{oauthctl users mod} sets: a verified email, an address
        (only with the address scope), and C{updated_at} the time of the
        change.
        """
        self.clock.advance(100)
        self.successResultOf(self.server.store.commit(update_user(
            self.server.ctx, "alice", email_verified=True, address="1 Rabbit Hole, Oxford")))
        alice = self.server.state.users["alice"]
        assert alice.updated_at == alice.created_at + 100
        assert self.claims("openid email address").body == {
            "sub": alice.uid, "email": "alice@example.com", "email_verified": True,
            "address": {"formatted": "1 Rabbit Hole, Oxford"}}
        assert self.claims("openid profile").body["updated_at"] == alice.updated_at
        assert "address" not in self.claims("openid profile email").body
        reply = self.claims("openid")
        assert reply.header("cache-control") == "no-store"

    def test_absent_profile_fields_are_left_out(self) -> None:
        self.add_user("bob", "bobs password")
        access = self.password_grant(username="bob", password="bobs password", scope="*").body["access_token"]
        bob = self.server.state.users["bob"]
        assert self.request("GET", USERINFO, headers=bearer(access)).body == {
            "sub": bob.uid, "preferred_username": "bob", "updated_at": bob.created_at}

    def test_without_openid_scope_is_insufficient_scope(self) -> None:
        reply = self.claims("photos")
        self.assert_error(reply, 403, "insufficient_scope")
        challenge = reply.header("www-authenticate") or ""
        assert 'error="insufficient_scope"' in challenge and 'scope="openid"' in challenge

    def test_token_without_user_is_invalid_token(self) -> None:
        access = self.token({"grant_type": "client_credentials"}).body["access_token"]
        reply = self.request("GET", USERINFO, headers=bearer(access))
        self.assert_error(reply, 401, "invalid_token")
        assert "not bound to a user" in reply.body["error_description"]

    def test_post_with_header_or_form_body(self) -> None:
        access = self.password_grant(scope="openid").body["access_token"]
        assert self.post(USERINFO, headers=bearer(access)).body == {"sub": self.server.state.users["alice"].uid}
        assert self.post(USERINFO, {"access_token": access}).body == {"sub": self.server.state.users["alice"].uid}
        self.assert_error(self.post(USERINFO, {"access_token": access}, headers=bearer(access)),
                          400, "invalid_request")

    def test_session_id_is_the_sha256_of_the_token(self) -> None:
        body = self.password_grant().body
        assert body["session_id"] == tokens.session_id(body["access_token"])
