"""
Token revocation (RFC 7009) and PhotoPrism's self-revocation.
"""

from __future__ import annotations

from typing import Any

from oauthd.protocol import tokens
from tests.oauth_helpers import REVOKE, OAuthCase, bearer


class RevokeTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.grant = self.password_grant().body

    def revoke(self, form: dict[str, str] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("auth", (self.client.id, self.secret))
        return self.post(REVOKE, form, **kwargs)

    def live(self, secret: str) -> bool:
        return self.server.state.token(tokens.token_key(secret), self.clock.seconds()) is not None

    def test_rfc7009_example_revokes_an_access_token(self) -> None:
        reply = self.revoke({"token": self.grant["access_token"], "token_type_hint": "access_token"})
        assert reply.code == 200, reply
        assert reply.header("cache-control") == "no-store"
        assert not self.live(self.grant["access_token"])
        assert self.live(self.grant["refresh_token"])

    def test_revoking_a_refresh_token_takes_the_grant(self) -> None:
        second = self.token({"grant_type": "refresh_token", "refresh_token": self.grant["refresh_token"]}).body
        assert self.revoke({"token": second["refresh_token"], "token_type_hint": "refresh_token"}).code == 200
        for secret in (self.grant["access_token"], self.grant["refresh_token"],
                       second["access_token"], second["refresh_token"]):
            assert not self.live(secret)

    def test_revoking_a_used_refresh_token_takes_the_grant(self) -> None:
        """
        A used refresh token is no longer a token, but its client revoking
        it still revokes its grant (as revoking any refresh token does);
        another client cannot.
        """
        second = self.token({"grant_type": "refresh_token", "refresh_token": self.grant["refresh_token"]}).body
        other, secret = self.add_client("other")
        assert self.revoke({"token": self.grant["refresh_token"]}, auth=(other.id, secret)).code == 200
        assert self.live(second["refresh_token"])
        assert self.revoke({"token": self.grant["refresh_token"]}).code == 200
        for secret in (self.grant["access_token"], second["access_token"], second["refresh_token"]):
            assert not self.live(secret)

    def test_hint_is_only_a_hint(self) -> None:
        for hint in ("access_token", "bogus", "refresh_token"):
            body = self.password_grant().body
            assert self.revoke({"token": body["refresh_token"], "token_type_hint": hint}).code == 200
            assert not self.live(body["access_token"])

    def test_unknown_or_revoked_tokens_still_get_200(self) -> None:
        for token in ("0" * 48, "garbage", self.grant["access_token"], self.grant["access_token"]):
            assert self.revoke({"token": token}).code == 200

    def test_a_client_revokes_only_its_own_tokens(self) -> None:
        other, secret = self.add_client("other")
        reply = self.revoke({"token": self.grant["access_token"]}, auth=(other.id, secret))
        assert reply.code == 200
        assert self.live(self.grant["access_token"])

    def test_client_authentication_errors(self) -> None:
        self.assert_error(self.revoke({"token": self.grant["access_token"]}, auth=(self.client.id, "bad")),
                          401, "invalid_client")
        self.assert_error(self.revoke({"token": self.grant["access_token"]}, auth=None),
                          401, "invalid_client")
        self.assert_error(self.revoke({}), 400, "invalid_request")
        assert self.live(self.grant["access_token"])

    def test_public_client_revokes_with_its_id(self) -> None:
        public, _ = self.add_client("spa", type="public", grant_types=("password", "refresh_token"))
        from tests.oauth_helpers import PASSWORD

        body = self.post("/api/v1/oauth/token", {"grant_type": "password", "client_id": public.id,
                                                 "username": "alice", "password": PASSWORD}).body
        reply = self.revoke({"token": body["refresh_token"], "client_id": public.id}, auth=None)
        assert reply.code == 200
        assert not self.live(body["access_token"])

    def test_photoprism_self_revocation(self) -> None:
        """
        A token in a header and an empty body revokes that token.
        """
        for header in ("X-Auth-Token", "X-Session-ID", "Authorization"):
            access = self.password_grant().body["access_token"]
            value = ("Bearer " if header == "Authorization" else "") + access
            reply = self.post(REVOKE, headers={header: value})
            assert reply.code == 200, reply
            assert reply.body == {"status": "deleted", "session_id": tokens.session_id(access)}
            assert not self.live(access)

    def test_self_revocation_by_reference_after_a_restart(self) -> None:
        """
        A token names itself in the body, by value or session id, whatever
        its scope, also once the server has replayed it from the journal.
        """
        client_token = self.token({"grant_type": "client_credentials", "scope": "photos"}).body
        narrow = self.password_grant(scope="photos").body
        self.restart()
        for issued, reference in ((client_token, "value"), (narrow, "session_id")):
            access = issued["access_token"]
            name = access if reference == "value" else tokens.session_id(access)
            reply = self.post(REVOKE, {"token": name}, headers=bearer(access))
            assert reply.code == 200, reply
            assert not self.live(access), reference

    def test_self_revocation_with_a_bad_token(self) -> None:
        self.assert_error(self.post(REVOKE, headers={"X-Auth-Token": "0" * 48}), 401, "invalid_token")

    def test_full_scope_bearer_revokes_its_users_tokens_by_any_reference(self) -> None:
        """
        PhotoPrism's "Apps and Devices": a user's full-scope token revokes
        another of that user's tokens by value, session id or handle.
        """
        session = self.password_grant(scope="*").body["access_token"]
        for reference in ("value", "session_id", "handle"):
            app, app_token = self.app_password()
            name = {"value": app, "session_id": tokens.session_id(app), "handle": app_token.handle}[reference]
            reply = self.post(REVOKE, {"token": name}, headers=bearer(session))
            assert reply.code == 200
            assert not self.live(app), reference
        assert self.live(session)

    def test_narrow_bearer_or_other_user_cannot_revoke(self) -> None:
        self.add_user("bob", "bobs password")
        bob = self.password_grant(username="bob", password="bobs password").body["access_token"]
        narrow = self.password_grant(scope="photos").body["access_token"]
        app, app_token = self.app_password()
        for caller in (bob, narrow):
            for name in (app, app_token.handle):
                assert self.post(REVOKE, {"token": name}, headers=bearer(caller)).code == 200
        assert self.live(app)

    def test_revocation_is_durable_before_the_answer(self) -> None:
        self.journal.holding = True
        d = self.treq.post("http://oauthd.test" + REVOKE, data={"token": self.grant["access_token"]},
                           auth=(self.client.id, self.secret))
        self.assertNoResult(d)
        self.journal.release()
        self.treq.flush()
        assert self.successResultOf(d).code == 200

    def test_revoking_an_app_password_revokes_its_descendants(self) -> None:
        app, _ = self.app_password()
        derived = self.password_grant(password=app).body
        session = self.post("/api/v1/session", json_body={"username": "alice", "password": app}).body
        self.post(REVOKE, headers={"X-Auth-Token": app})
        for secret in (derived["access_token"], derived["refresh_token"], session["access_token"]):
            assert not self.live(secret)
