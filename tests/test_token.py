"""
The token endpoint over HTTP: client authentication, each grant's happy path
and error paths, RFC 6749's examples and PhotoPrism's request shapes.
"""

from __future__ import annotations

import base64
from typing import Any

import attrs

from twisted.internet.defer import Deferred


from oauthd.protocol import tokens
from oauthd.interfaces import HasherBusy
from oauthd.state.entities import ACCESS, REFRESH, Client
from oauthd.state.records import ClientPut
from tests.helpers import change
from tests.oauth_helpers import INTROSPECT, PASSWORD, TOKEN, OAuthCase, bearer


class ClientAuthenticationTests(OAuthCase):
    def add_raw_client(self, client_id: str, secret: str, **fields: Any) -> Client:
        client = Client(id=client_id, name="raw", secret_digest=tokens.secret_digest(secret), **fields)
        self.successResultOf(self.server.store.commit(change([ClientPut(client)])))
        return client

    def test_rfc6749_client_credentials_example(self) -> None:
        """
        The request of RFC 6749 section 4.4.2, byte for byte, gets a
        section 5.1 answer with no-store and no-cache.
        """
        self.add_raw_client("s6BhdRkqt3", "gX1fBat3bV")
        reply = self.post(TOKEN, body=b"grant_type=client_credentials", headers={
            "Authorization": "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW",
            "Content-Type": "application/x-www-form-urlencoded",
        })
        assert reply.code == 200, reply
        assert reply.header("cache-control") == "no-store"
        assert reply.header("pragma") == "no-cache"
        assert reply.body["token_type"] == "Bearer"
        assert tokens.is_access_token(reply.body["access_token"])
        assert reply.body["expires_in"] == 3600
        assert "refresh_token" not in reply.body

    def test_basic_credentials_are_form_decoded(self) -> None:
        """
        RFC 6749 section 2.3.1: the id and secret are form-encoded before
        Basic encoding, so ':' '%' '+' and spaces survive the trip.
        """
        self.add_raw_client("odd:id x", "p@ss word+%")
        encoded = base64.b64encode(b"odd%3Aid+x:p%40ss+word%2B%25").decode()
        reply = self.token({"grant_type": "client_credentials"}, auth=None,
                           headers={"Authorization": "Basic " + encoded})
        assert reply.code == 200, reply

    def test_client_secret_post(self) -> None:
        reply = self.token({"grant_type": "client_credentials", "client_id": self.client.id,
                            "client_secret": self.secret}, auth=None)
        assert reply.code == 200, reply
        assert reply.body["client_name"] == "Photo App"

    def test_two_methods_at_once_is_invalid_request(self) -> None:
        reply = self.token({"grant_type": "client_credentials", "client_secret": self.secret})
        self.assert_error(reply, 400, "invalid_request")

    def test_client_id_in_body_must_match_basic(self) -> None:
        other, _ = self.add_client("other")
        reply = self.token({"grant_type": "client_credentials", "client_id": other.id})
        self.assert_error(reply, 400, "invalid_request")
        reply = self.token({"grant_type": "client_credentials", "client_id": self.client.id})
        assert reply.code == 200

    def test_wrong_secret_with_basic_gets_a_basic_challenge(self) -> None:
        reply = self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"))
        self.assert_error(reply, 401, "invalid_client")
        assert reply.header("www-authenticate") == 'Basic realm="oauthd"'

    def test_wrong_secret_in_body_gets_a_basic_challenge_too(self) -> None:
        reply = self.token({"grant_type": "client_credentials", "client_id": self.client.id,
                            "client_secret": "wrong"}, auth=None)
        self.assert_error(reply, 401, "invalid_client")
        assert reply.header("www-authenticate") == 'Basic realm="oauthd"'

    def test_failures_are_all_invalid_client(self) -> None:
        """
        Unknown client, disabled client, no credentials, malformed Basic,
        another scheme, an empty secret for a confidential client: 401.
        """
        disabled, disabled_secret = self.add_client("off")
        self.successResultOf(self.server.update_client(disabled.id, enabled=False))
        cases: list[dict[str, Any]] = [
            {"auth": ("c000000000000000", self.secret)},
            {"auth": (disabled.id, disabled_secret)},
            {"auth": None},
            {"auth": None, "headers": {"Authorization": "Basic !!!"}},
            {"auth": None, "headers": {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}},
            {"auth": None, "headers": {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}},
            {"auth": None, "headers": {"Authorization": "Digest username=x"}},
            {"auth": (self.client.id, "")},
        ]
        for case in cases:
            reply = self.token({"grant_type": "client_credentials"}, **case)
            self.assert_error(reply, 401, "invalid_client")

    def test_public_client_identifies_by_id_only(self) -> None:
        public, secret = self.add_client("spa", type="public", grant_types=("password", "refresh_token"))
        assert secret == ""
        reply = self.post(TOKEN, {"grant_type": "password", "client_id": public.id,
                                  "username": "alice", "password": PASSWORD})
        assert reply.code == 200, reply
        assert "refresh_token" in reply.body
        # A public client may not use a grant it is not allowed, nor send a secret.
        self.assert_error(self.post(TOKEN, {"grant_type": "client_credentials", "client_id": public.id}),
                          400, "unauthorized_client")
        self.assert_error(self.post(TOKEN, {"grant_type": "password", "client_id": public.id,
                                            "client_secret": "x", "username": "alice",
                                            "password": PASSWORD}), 401, "invalid_client")
        self.assert_error(self.post(TOKEN, {"client_id": public.id}), 400, "invalid_request")


class ClientCredentialsTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.prom, self.prom_secret = self.add_client("Prometheus", scope="metrics photos", max_tokens=2)

    def cc(self, **form: str) -> Any:
        return self.token({"grant_type": "client_credentials", **form}, auth=(self.prom.id, self.prom_secret))

    def test_default_scope_is_the_clients(self) -> None:
        reply = self.cc()
        assert reply.body["scope"] == "metrics photos"
        token = self.server.authenticate_token(reply.body["access_token"])
        assert token is not None and token.kind == ACCESS and token.client_id == self.prom.id
        assert reply.body["status"] == "success"
        assert reply.body["session_id"] == tokens.session_id(reply.body["access_token"])
        assert reply.body["client_name"] == "Prometheus"

    def test_narrower_scope(self) -> None:
        assert self.cc(scope="Metrics  metrics").body["scope"] == "metrics"

    def test_scope_errors(self) -> None:
        for scope in ("nonsense", "metrics albums", "*", "x" * 800):
            self.assert_error(self.cc(scope=scope), 400, "invalid_scope")

    def test_missing_grant_type_means_client_credentials(self) -> None:
        """
        PhotoPrism: an authenticated request with no grant_type at all (here
        even no body) is a client_credentials request.
        """
        reply = self.token(auth=(self.prom.id, self.prom_secret))
        assert reply.code == 200, reply
        assert reply.body["scope"] == "metrics photos"

    def test_photoprism_json_body(self) -> None:
        reply = self.post(TOKEN, json_body={
            "grant_type": "client_credentials", "client_id": self.prom.id,
            "client_secret": self.prom_secret, "scope": "metrics",
        })
        assert (reply.code, reply.body["scope"]) == (200, "metrics")

    def test_token_limit_revokes_the_oldest(self) -> None:
        first, second, third = (self.cc().body["access_token"] for _ in range(3))
        assert self.server.authenticate_token(first) is None
        assert self.server.authenticate_token(second) is not None
        assert self.server.authenticate_token(third) is not None

    def test_client_not_allowed_the_grant(self) -> None:
        client, secret = self.add_client("pw", grant_types=("password",))
        self.assert_error(self.token({"grant_type": "client_credentials"}, auth=(client.id, secret)),
                          400, "unauthorized_client")

    def test_token_carries_the_clients_user(self) -> None:
        client, secret = self.add_client("owned", user="alice")
        reply = self.token({"grant_type": "client_credentials"}, auth=(client.id, secret))
        token = self.server.authenticate_token(reply.body["access_token"])
        assert token is not None and token.user == "alice"
        self.successResultOf(self.server.update_user("alice", disabled=True))
        self.assert_error(self.token({"grant_type": "client_credentials"}, auth=(client.id, secret)),
                          400, "unauthorized_client")

    def test_no_refresh_token_even_if_allowed(self) -> None:
        reply = self.token({"grant_type": "client_credentials"})
        assert reply.code == 200 and "refresh_token" not in reply.body

    def test_unsupported_grant_types(self) -> None:
        for grant_type in ("implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                           "Client_Credentials", "x" * 300):
            self.assert_error(self.cc(grant_type=grant_type), 400, "unsupported_grant_type")

    def test_answer_waits_until_durable(self) -> None:
        """
        The token is in memory at once but the answer waits for the journal.
        """
        self.journal.holding = True
        d = self.treq.post("http://oauthd.test" + TOKEN, data={"grant_type": "client_credentials"},
                           auth=(self.prom.id, self.prom_secret))
        self.assertNoResult(d)
        self.journal.release()
        self.treq.flush()
        response = self.successResultOf(d)
        assert response.code == 200

    def test_journal_failure_is_503(self) -> None:
        self.journal.fail(OSError("disk full"))
        reply = self.cc()
        self.assert_error(reply, 503, "temporarily_unavailable")
        assert reply.header("retry-after") == "1"


class PasswordGrantTests(OAuthCase):
    def test_password_grant_issues_access_and_refresh(self) -> None:
        reply = self.password_grant(scope="photos openid")
        assert reply.code == 200, reply
        assert reply.body["scope"] == "openid photos"
        access = self.server.authenticate_token(reply.body["access_token"])
        assert access is not None and access.user == "alice" and access.grant
        refresh = self.server.state.token(tokens.token_key(reply.body["refresh_token"]), self.clock.seconds())
        assert refresh is not None and refresh.kind == REFRESH and refresh.grant == access.grant
        assert refresh.lifetime == self.client.refresh_ttl

    def test_rfc6749_password_example_shape(self) -> None:
        """
        RFC 6749 section 4.3.2, with our client and user.
        """
        credentials = base64.b64encode(f"{self.client.id}:{self.secret}".encode()).decode()
        reply = self.post(TOKEN, body=f"grant_type=password&username=alice&password={PASSWORD.replace(' ', '+')}".encode(),
                          headers={"Authorization": "Basic " + credentials,
                                   "Content-Type": "application/x-www-form-urlencoded"})
        assert reply.code == 200, reply

    def test_usernames_are_case_insensitive(self) -> None:
        assert self.password_grant(username=" Alice ").code == 200

    def test_no_refresh_token_unless_the_client_may_refresh(self) -> None:
        client, secret = self.add_client("norefresh", grant_types=("password",))
        reply = self.token({"grant_type": "password", "username": "alice", "password": PASSWORD},
                           auth=(client.id, secret))
        assert reply.code == 200 and "refresh_token" not in reply.body

    def test_wrong_password_unknown_user_and_disabled_user(self) -> None:
        self.assert_error(self.password_grant(password="wrong"), 400, "invalid_grant")
        self.assert_error(self.password_grant(username="bob"), 400, "invalid_grant")
        self.assert_error(self.password_grant(username="not a name!"), 400, "invalid_grant")
        self.successResultOf(self.server.update_user("alice", disabled=True))
        self.assert_error(self.password_grant(), 400, "invalid_grant")

    def test_missing_and_overlong_parameters(self) -> None:
        self.assert_error(self.token({"grant_type": "password", "username": "alice"}), 400, "invalid_request")
        self.assert_error(self.token({"grant_type": "password", "password": PASSWORD}), 400, "invalid_request")
        self.assert_error(self.password_grant(password="é" * 37), 400, "invalid_request")

    def test_client_not_allowed_password(self) -> None:
        client, secret = self.add_client("cc only")
        reply = self.token({"grant_type": "password", "username": "alice", "password": PASSWORD},
                           auth=(client.id, secret))
        self.assert_error(reply, 400, "unauthorized_client")

    def test_scope_within_the_clients(self) -> None:
        client, secret = self.add_client("narrow", scope="photos", grant_types=("password",))
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        assert self.token(form, auth=(client.id, secret)).body["scope"] == "photos"
        self.assert_error(self.token({**form, "scope": "photos albums"}, auth=(client.id, secret)),
                          400, "invalid_scope")

    def test_app_password_instead_of_password(self) -> None:
        """
        An app password of the user works as the password, gives at most its
        own scope, and ends no later than it does.
        """
        app, app_token = self.app_password(scope="photos webdav", lifetime=600)
        reply = self.password_grant(password=app)
        assert reply.code == 200, reply
        assert reply.body["scope"] == "photos webdav"
        assert reply.body["expires_in"] == 600
        access = self.server.authenticate_token(reply.body["access_token"])
        assert access is not None and access.label == "from " + app_token.handle
        assert self.password_grant(password=app, scope="photos").body["scope"] == "photos"
        self.assert_error(self.password_grant(password=app, scope="albums"), 400, "invalid_scope")

    def test_app_password_of_someone_else_or_mistyped(self) -> None:
        self.add_user("bob", "bobs password")
        app, _ = self.app_password(user="bob")
        self.assert_error(self.password_grant(password=app), 400, "invalid_grant")
        mistyped = app[:-1] + ("A" if app[-1] != "A" else "B")
        self.assert_error(self.password_grant(username="bob", password=mistyped), 400, "invalid_grant")

    def test_app_password_without_common_scope(self) -> None:
        client, secret = self.add_client("metrics", scope="metrics", grant_types=("password",))
        app, _ = self.app_password(scope="webdav")
        reply = self.token({"grant_type": "password", "username": "alice", "password": app},
                           auth=(client.id, secret))
        self.assert_error(reply, 400, "invalid_scope")

    def test_revoking_the_app_password_revokes_what_it_obtained(self) -> None:
        app, app_token = self.app_password()
        reply = self.password_grant(password=app)
        self.successResultOf(self.server.revoke(app_token))
        assert self.server.authenticate_token(reply.body["access_token"]) is None
        assert tokens.token_key(reply.body["refresh_token"]) not in self.server.state.tokens

    def test_two_factor_users_may_use_only_app_passwords(self) -> None:
        app, _ = self.app_password()
        self.server.ctx.second_factor = lambda user: True
        self.assert_error(self.password_grant(), 400, "invalid_grant")
        assert self.password_grant(password=app).code == 200

    def test_client_changed_while_the_password_was_checked(self) -> None:
        """
        bcrypt takes a while; a client narrowed or stripped of the password
        grant meanwhile gets what it is allowed now, not what it was.
        """
        for change, expected in (({"scope": "openid"}, "openid"),
                                 ({"grant_types": ("client_credentials",)}, None)):
            client, secret = self.add_client("changing", scope="*", grant_types=(
                "client_credentials", "password"))
            pending = self.hasher.hold()
            d = self.treq.post("http://oauthd.test" + TOKEN, auth=(client.id, secret), data={
                "grant_type": "password", "username": "alice", "password": PASSWORD})
            self.assertNoResult(d)
            self.successResultOf(self.server.update_client(client.id, **change))
            pending.callback(True)
            self.treq.flush()
            response = self.successResultOf(d)
            body = self.successResultOf(response.json())
            if expected is None:
                assert (response.code, body["error"]) == (400, "unauthorized_client")
            else:
                assert (response.code, body["scope"]) == (200, expected)

    def test_busy_hasher_is_503(self) -> None:
        self.hasher.busy = True
        reply = self.password_grant()
        self.assert_error(reply, 503, "temporarily_unavailable")
        assert reply.header("retry-after") == "1"

    def test_limit_is_per_user_and_client(self) -> None:
        """
        A client's token limit bounds each user's grants there, oldest
        first; another user's tokens and the client's own are untouched.
        """
        client, secret = self.add_client("two", max_tokens=2, grant_types=(
            "client_credentials", "password", "refresh_token"))
        self.add_user("bob", "bobs password")
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        own = self.token({"grant_type": "client_credentials"}, auth=(client.id, secret)).body
        bob = self.token({**form, "username": "bob", "password": "bobs password"}, auth=(client.id, secret)).body
        alice = [self.token(form, auth=(client.id, secret)).body for _ in range(3)]
        assert self.server.authenticate_token(alice[0]["access_token"]) is None
        assert tokens.token_key(alice[0]["refresh_token"]) not in self.server.state.tokens
        for body in alice[1:] + [bob, own]:
            assert self.server.authenticate_token(body["access_token"]) is not None


class RefreshTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.first = self.password_grant(scope="openid photos albums").body

    def refresh(self, refresh_token: str, **form: str) -> Any:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token, **form})

    def test_rotation(self) -> None:
        """
        A refresh gives a new access token and a new refresh token of the
        same grant; the old refresh token is marked used.
        """
        self.clock.advance(100)
        reply = self.refresh(self.first["refresh_token"])
        assert reply.code == 200, reply
        assert reply.body["refresh_token"] != self.first["refresh_token"]
        assert reply.body["scope"] == "albums openid photos"
        old = tokens.token_key(self.first["refresh_token"])
        assert old not in self.server.state.tokens
        family = self.server.state.used_family(old)
        new = self.server.authenticate_token(reply.body["access_token"])
        assert new is not None and family is not None and new.grant == family.grant and new.user == "alice"
        # The first access token stays valid until it expires.
        assert self.server.authenticate_token(self.first["access_token"]) is not None

    def test_reuse_revokes_the_whole_family(self) -> None:
        """
        RFC 9700 section 4.14.2: presenting a used refresh token revokes
        every token descended from the grant, durably, before answering.
        """
        second = self.refresh(self.first["refresh_token"]).body
        third = self.refresh(second["refresh_token"]).body
        other = self.password_grant().body
        self.journal.holding = True
        d = self.treq.post("http://oauthd.test" + TOKEN, data={
            "grant_type": "refresh_token", "refresh_token": self.first["refresh_token"]},
            auth=(self.client.id, self.secret))
        self.assertNoResult(d)
        self.journal.release()
        self.treq.flush()
        response = self.successResultOf(d)
        assert response.code == 400
        assert self.successResultOf(response.json())["error"] == "invalid_grant"
        for body in (self.first, second, third):
            assert self.server.authenticate_token(body["access_token"]) is None
        self.assert_error(self.refresh(third["refresh_token"]), 400, "invalid_grant")
        assert self.server.authenticate_token(other["access_token"]) is not None

    def test_a_refusal_given_later_to_a_host_naming_no_host_is_answered(self) -> None:
        """
        A reuse refused only once its revocation is durable, asked with a
        Host Klein's URL map cannot bind: refused as JSON at once, before
        any change, rather than left unanswered (the refusal, rendered
        Klein's way later, failed) with its connection held.
        """
        second = self.refresh(self.first["refresh_token"]).body
        self.journal.holding = True
        d = self.treq.post("http://oauthd.test" + TOKEN, data={
            "grant_type": "refresh_token", "refresh_token": self.first["refresh_token"]},
            auth=(self.client.id, self.secret), headers={b"Host": [b"oauthd..test"]})
        self.journal.release()
        self.treq.flush()
        response = self.successResultOf(d)
        assert response.code == 400
        assert self.successResultOf(response.json())["error"] == "invalid_request"
        assert self.server.authenticate_token(second["access_token"]) is not None

    def test_racing_refreshes_are_not_both_granted(self) -> None:
        """
        Two refreshes of one token arrive before either is durable: memory
        changes in order, so the second sees the first's rotation, counts as
        reuse and revokes the family, including what the first was given.
        No update is lost and no second live family is made.
        """
        self.journal.holding = True
        form = {"grant_type": "refresh_token", "refresh_token": self.first["refresh_token"]}
        first = self.treq.post("http://oauthd.test" + TOKEN, data=form, auth=(self.client.id, self.secret))
        second = self.treq.post("http://oauthd.test" + TOKEN, data=form, auth=(self.client.id, self.secret))
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.journal.release()
        self.treq.flush()
        won = self.successResultOf(self.successResultOf(first).json())
        lost = self.successResultOf(second)
        assert lost.code == 400
        assert self.successResultOf(lost.json())["error"] == "invalid_grant"
        for secret in (won["access_token"], won["refresh_token"], self.first["access_token"]):
            assert tokens.token_key(secret) not in self.server.state.tokens
        assert self.refresh(won["refresh_token"]).code == 400

    def test_narrower_scope_but_never_wider(self) -> None:
        reply = self.refresh(self.first["refresh_token"], scope="photos")
        assert reply.body["scope"] == "photos"
        # The refresh token keeps the grant's scope: the next refresh may ask
        # for all of it again.
        again = self.refresh(reply.body["refresh_token"])
        assert again.body["scope"] == "albums openid photos"
        self.assert_error(self.refresh(again.body["refresh_token"], scope="photos metrics"),
                          400, "invalid_scope")

    def test_bad_refresh_tokens(self) -> None:
        self.assert_error(self.refresh(self.first["access_token"]), 400, "invalid_grant")
        self.assert_error(self.refresh("0" * 48), 400, "invalid_grant")
        self.assert_error(self.refresh("not-a-token"), 400, "invalid_grant")
        self.assert_error(self.token({"grant_type": "refresh_token"}), 400, "invalid_request")

    def test_expired_refresh_token(self) -> None:
        self.clock.advance(self.client.refresh_ttl)
        self.assert_error(self.refresh(self.first["refresh_token"]), 400, "invalid_grant")

    def test_another_clients_refresh_token(self) -> None:
        other, secret = self.add_client("other", grant_types=("password", "refresh_token"))
        reply = self.token({"grant_type": "refresh_token", "refresh_token": self.first["refresh_token"]},
                           auth=(other.id, secret))
        self.assert_error(reply, 400, "invalid_grant")
        # Not a reuse: the owner can still refresh.
        assert self.refresh(self.first["refresh_token"]).code == 200

    def test_client_that_may_no_longer_refresh(self) -> None:
        self.successResultOf(self.server.update_client(
            self.client.id, grant_types=("client_credentials", "password")))
        self.assert_error(self.refresh(self.first["refresh_token"]), 400, "unauthorized_client")

    def test_narrowed_client_scope_applies_to_refresh(self) -> None:
        self.successResultOf(self.server.update_client(self.client.id, scope="photos"))
        self.assert_error(self.refresh(self.first["refresh_token"]), 400, "invalid_scope")
        assert self.refresh(self.first["refresh_token"], scope="photos").code == 200

    def test_refresh_of_app_password_grant_stays_capped(self) -> None:
        app, app_token = self.app_password(lifetime=1000)
        first = self.password_grant(password=app).body
        self.clock.advance(400)
        reply = self.refresh(first["refresh_token"])
        assert reply.body["expires_in"] == 600
        refresh = self.server.state.tokens[tokens.token_key(reply.body["refresh_token"])]
        assert refresh.expires_at == app_token.expires_at
        self.successResultOf(self.server.revoke(app_token))
        self.assert_error(self.refresh(reply.body["refresh_token"]), 400, "invalid_grant")

    def test_refresh_token_is_not_a_bearer_token(self) -> None:
        reply = self.post(INTROSPECT, {"token": self.first["access_token"]},
                          headers=bearer(self.first["refresh_token"]))
        self.assert_error(reply, 401, "invalid_token")

    def test_refresh_survives_restart(self) -> None:
        from oauthd.eventlog import MemoryJournal
        from tests.helpers import make_server

        restarted = make_server(self.config, clock=self.clock, journal=MemoryJournal(self.journal.payloads))
        token = restarted.state.tokens[tokens.token_key(self.first["refresh_token"])]
        assert token.kind == REFRESH and token.user == "alice"
        assert not any(self.first["refresh_token"].encode() in p for p in self.journal.payloads)

    def test_family_keeps_at_most_max_tokens_access_tokens(self) -> None:
        self.successResultOf(self.server.update_client(self.client.id, max_tokens=2))
        body = self.first
        issued = [body]
        for _ in range(3):
            body = self.refresh(body["refresh_token"]).body
            issued.append(body)
        live = [b for b in issued if self.server.authenticate_token(b["access_token"]) is not None]
        assert live == issued[-2:]


def test_client_record_helper_is_plain() -> None:
    """
    (Guard) Client is still the attrs class the tests above build by hand.
    """
    assert attrs.has(Client)


class DiscoveryTests(OAuthCase):
    def test_metadata_lists_what_is_served(self) -> None:
        """
        Discovery advertises exactly the endpoints, grants, client
        authentication methods and claims now implemented.
        """
        oauth = self.request("GET", "/.well-known/oauth-authorization-server").body
        oidc = self.request("GET", "/.well-known/openid-configuration").body
        base = "https://auth.example.com/api/v1/oauth/"
        assert oauth["token_endpoint"] == base + "token"
        assert oauth["revocation_endpoint"] == base + "revoke"
        assert oauth["introspection_endpoint"] == base + "introspect"
        assert oidc["userinfo_endpoint"] == base + "userinfo"
        assert oauth["grant_types_supported"] == [
            "authorization_code", "client_credentials", "password", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"]
        assert oauth["device_authorization_endpoint"] == base + "device"
        assert oauth["authorization_endpoint"] == base + "authorize"
        assert (oauth["response_types_supported"], oauth["response_modes_supported"]) == (
            ["code"], ["form_post", "query"])
        assert oauth["code_challenge_methods_supported"] == ["S256"]
        assert oauth["authorization_response_iss_parameter_supported"] is True
        assert oauth["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post", "none"]
        assert oauth["introspection_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post"]
        assert set(oidc["claims_supported"]) == {
            "sub", "name", "preferred_username", "updated_at", "email", "email_verified", "address",
            "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "sid"}
        # The signing keys (issue 15) are served, and named in both documents.
        assert oidc["jwks_uri"] == oauth["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"
        assert oidc["id_token_signing_alg_values_supported"] == ["ES256", "EdDSA", "RS256"]
