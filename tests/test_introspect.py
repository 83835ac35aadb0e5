"""
Token introspection (RFC 7662).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from tests.helpers import START
from tests.oauth_helpers import INTROSPECT, OAuthCase, bearer


class TickingClock(Clock):
    """
    A clock that moves on by a second each time it is read: time passing
    while a request is decided.
    """

    def seconds(self) -> float:
        now = self.rightNow
        self.advance(1)
        return now


class IntrospectTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.rs, self.rs_secret = self.add_client("resource server", scope="metrics", introspect=True)
        self.clock.advance(10)
        self.grant = self.password_grant(scope="photos openid").body

    def introspect(self, token: str, **kwargs: Any) -> Any:
        kwargs.setdefault("auth", (self.rs.id, self.rs_secret))
        return self.post(INTROSPECT, {"token": token}, **kwargs)

    def test_live_access_token(self) -> None:
        reply = self.introspect(self.grant["access_token"])
        assert reply.code == 200, reply
        assert reply.header("cache-control") == "no-store"
        assert reply.body == {
            "active": True, "scope": "openid photos", "client_id": self.client.id,
            "username": "alice", "token_type": "Bearer", "exp": START + 10 + 3600,
            "iat": START + 10, "sub": self.server.state.users["alice"].uid, "iss": "https://auth.example.com",
        }

    def test_client_token_has_the_client_as_subject(self) -> None:
        access = self.token({"grant_type": "client_credentials", "scope": "metrics"}).body["access_token"]
        body = self.introspect(access).body
        assert body["sub"] == self.client.id and "username" not in body

    def test_refresh_token_is_active_until_used(self) -> None:
        body = self.introspect(self.grant["refresh_token"]).body
        assert body["active"] is True and body["token_type"] == "refresh_token"
        self.token({"grant_type": "refresh_token", "refresh_token": self.grant["refresh_token"]})
        assert self.introspect(self.grant["refresh_token"]).body == {"active": False}

    def test_never_expiring_app_password_has_no_exp(self) -> None:
        app, _ = self.app_password(scope="webdav")
        body = self.introspect(app).body
        assert body["active"] is True and "exp" not in body and "client_id" not in body

    def test_anything_else_is_exactly_inactive(self) -> None:
        revoked = self.password_grant().body["access_token"]
        self.post("/api/v1/oauth/revoke", headers={"X-Auth-Token": revoked})
        for token in ("0" * 48, "garbage", "x" * 4000, revoked):
            reply = self.introspect(token)
            assert (reply.code, reply.body) == (200, {"active": False})
        self.clock.advance(3600)
        assert self.introspect(self.grant["access_token"]).body == {"active": False}

    def test_bearer_with_introspect_scope(self) -> None:
        """
        A bearer whose scope names introspect may ask, whichever client it
        came from: the scope was given by name, by an admin.
        """
        service, secret = self.add_client("service", scope="metrics introspect")
        caller = self.token({"grant_type": "client_credentials", "scope": "introspect"},
                            auth=(service.id, secret)).body["access_token"]
        reply = self.post(INTROSPECT, {"token": self.grant["access_token"]}, headers=bearer(caller))
        assert reply.body["active"] is True

    def test_a_client_that_is_not_a_resource_server_may_not_introspect(self) -> None:
        """
        A confidential client authenticates, but only one marked as a
        resource server may introspect (RFC 7662 section 4): any other gets
        403 unauthorized_client (not 401 invalid_client: its credentials are
        good, and no other credentials would help), learns nothing of the
        token, and changes nothing.
        """
        before = self.journal_size()
        for form in ({"token": self.grant["access_token"]},
                     {"token": self.grant["access_token"], "client_id": self.client.id,
                      "client_secret": self.secret}):
            reply = self.post(INTROSPECT, form, auth=(self.client.id, self.secret) if len(form) == 1 else None)
            self.assert_error(reply, 403, "unauthorized_client")
            assert "www-authenticate" not in reply.headers
            assert "active" not in reply.body and "resource server" in reply.body["error_description"]
        assert self.journal_size() == before
        self.successResultOf(self.server.update_client(self.client.id, introspect=True))
        assert self.introspect(self.grant["access_token"], auth=(self.client.id, self.secret)).body["active"]
        self.successResultOf(self.server.update_client(self.client.id, introspect=False))
        self.assert_error(self.introspect(self.grant["access_token"], auth=(self.client.id, self.secret)),
                          403, "unauthorized_client")

    def test_all_scopes_do_not_grant_introspect(self) -> None:
        """
        C{*} grants every scope but introspect, which only a scope that names
        it grants: otherwise any client with the default scope, or any user
        logging in through one, could get a token that introspects.
        """
        for reply in (self.token({"grant_type": "client_credentials", "scope": "introspect"}),
                      self.password_grant(scope="introspect"),
                      self.password_grant(scope="photos introspect")):
            self.assert_error(reply, 400, "invalid_scope")
        assert self.password_grant(scope="photos").code == 200

    def test_an_inactive_token_is_introspected_once(self) -> None:
        """
        A token found inactive is answered so at once on a node alone: the
        introspection is not made again (its caller's credential checked
        again, later), so a caller whose token was live when checked is not
        refused 401 for it expiring meanwhile.
        """
        service, secret = self.add_client("service", scope="metrics introspect")
        access = self.token({"grant_type": "client_credentials", "scope": "introspect"},
                            auth=(service.id, secret)).body["access_token"]
        caller = self.server.authenticate_token(access)
        assert caller is not None and caller.expires_at
        # Read first for the caller's token (live, two seconds before its
        # expiry), then for the token asked about (inactive).
        ticking = TickingClock()
        ticking.rightNow = caller.expires_at - 2
        self.server.ctx.clock = ticking
        reply = self.post(INTROSPECT, {"token": "0" * 48}, headers=bearer(access))
        assert (reply.code, reply.body) == (200, {"active": False}), reply

    def test_bearer_without_introspect_scope(self) -> None:
        """
        Only a bearer that names the introspect scope may ask: "*", which
        every login session has, is not enough.
        """
        for scope in ("photos", "*"):
            caller = self.token({"grant_type": "client_credentials", "scope": scope}).body["access_token"]
            reply = self.post(INTROSPECT, {"token": self.grant["access_token"]}, headers=bearer(caller))
            self.assert_error(reply, 403, "insufficient_scope")
        assert 'scope="introspect"' in (reply.header("www-authenticate") or "")

    def test_caller_must_authenticate(self) -> None:
        self.assert_error(self.introspect(self.grant["access_token"], auth=None), 401, "invalid_client")
        reply = self.introspect(self.grant["access_token"], auth=(self.rs.id, "wrong"))
        self.assert_error(reply, 401, "invalid_client")
        assert reply.header("www-authenticate") == 'Basic realm="oauthd"'
        public, _ = self.add_client("spa", type="public", grant_types=("password",))
        self.assert_error(self.post(INTROSPECT, {"token": self.grant["access_token"], "client_id": public.id}),
                          401, "invalid_client")
        self.assert_error(self.post(INTROSPECT, {"token": "x"}, headers=bearer("0" * 48)),
                          401, "invalid_token")

    def test_token_parameter_is_required(self) -> None:
        self.assert_error(self.post(INTROSPECT, {}, auth=(self.rs.id, self.rs_secret)), 400, "invalid_request")

    def test_client_secret_post_and_json(self) -> None:
        reply = self.post(INTROSPECT, {"token": self.grant["access_token"], "client_id": self.rs.id,
                                       "client_secret": self.rs_secret})
        assert reply.body["active"] is True
        reply = self.post(INTROSPECT, json_body={"token": self.grant["access_token"]},
                          auth=(self.rs.id, self.rs_secret))
        assert reply.body["active"] is True

    def test_introspection_changes_nothing(self) -> None:
        before = self.journal_size()
        for _ in range(3):
            self.introspect(self.grant["access_token"])
            self.introspect("0" * 48)
        assert self.journal_size() == before


class TickingClock(Clock):
    """
    A clock that moves on by a second each time it is read: time passing
    while a request is decided.
    """

    def seconds(self) -> float:
        now = super().seconds()
        self.advance(1)
        return now
