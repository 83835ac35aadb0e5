"""
Dynamic client registration (RFC 7591) and its management URI (RFC 7592),
over HTTP: the open and closed policies, every metadata error, reading,
replacing and deleting a registration, and registered clients completing
the client-credentials and authorization-code flows.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from oauthd.protocol import authorize, registration
from oauthd.protocol.admin import tokens as admin_tokens
from oauthd.protocol.errors import InvalidValue, OAuthError
from oauthd.state.entities import Token
from oauthd.state.model import State, replay
from tests.authz_helpers import VERIFIER, AuthzCase
from tests.oauth_helpers import TOKEN, Reply, bearer
from tests.test_signing import Events

REGISTER = "/api/v1/oauth/register"
CB = "https://rp.example/cb"
IP = "192.0.2.77"


class RegistrationCase(AuthzCase):
    config_values = {"registration": "open", "registration_scopes": ["openid", "photos", "albums"],
                     "registration_max_clients": 3}

    def register(self, metadata: object = None, **kwargs: Any) -> Reply:
        kwargs.setdefault("json_body", {"redirect_uris": [CB], "client_name": "Frame"}
                          if metadata is None else metadata)
        return self.request("POST", REGISTER, **kwargs)

    def assert_unchanged(self, before: int, reply: Reply, code: int, error: str) -> None:
        self.assert_error(reply, code, error)
        assert self.journal_size() == before, reply


class OpenPolicyTests(RegistrationCase):
    def test_a_confidential_client_registers(self) -> None:
        reply = self.register({"redirect_uris": [CB], "client_name": "Frame", "scope": "photos",
                               "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                               "contacts": ["ops@rp.example"], "logo_uri": "https://rp.example/logo.png",
                               "software_id": "frame", "software_version": "1.2", "color": "red"})
        assert reply.code == 201, reply
        body = reply.body
        assert reply.header("cache-control") == "no-store"
        assert body["client_secret_expires_at"] == 0 and len(body["client_secret"]) == 32
        assert body["client_id_issued_at"] == self.clock.seconds()
        assert body["registration_client_uri"] == f"https://auth.example.com{REGISTER}/{body['client_id']}"
        assert (body["client_name"], body["scope"], body["redirect_uris"], body["response_types"],
                body["token_endpoint_auth_method"], body["contacts"], body["software_version"]) == (
            "Frame", "photos", [CB], ["code"], "client_secret_basic", ["ops@rp.example"], "1.2")
        assert "color" not in body
        client = self.server.state.clients[body["client_id"]]
        assert client.registration_digest and body["registration_access_token"] not in repr(client)
        # It is an ordinary client: the client credentials grant works.
        token = self.token({"grant_type": "client_credentials", "scope": "photos"},
                           auth=(body["client_id"], body["client_secret"]))
        assert token.code == 200 and token.body["scope"] == "photos", token

    def test_a_public_client_completes_an_authorization_code_flow(self) -> None:
        native = "http://127.0.0.1/cb"
        reply = self.register({"redirect_uris": [native, "com.example.frame:/cb"],
                               "token_endpoint_auth_method": "none", "scope": "openid photos"})
        assert reply.code == 201 and "client_secret" not in reply.body, reply
        client_id = reply.body["client_id"]
        request = authorize.parse(self.ctx, {
            "client_id": client_id, "redirect_uri": native, "response_type": "code", "scope": "openid photos",
            "code_challenge": authorize.s256(VERIFIER), "code_challenge_method": "S256"})
        code = dict(self.answer(request, self.browser_login()).params)["code"]
        token = self.post(TOKEN, {"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                  "redirect_uri": native, "code_verifier": VERIFIER})
        assert token.code == 200 and "id_token" in token.body, token

    def test_the_defaults_are_an_authorization_code_client_with_every_allowed_scope(self) -> None:
        reply = self.register({"redirect_uris": [CB]})
        assert reply.code == 201, reply
        assert (reply.body["grant_types"], reply.body["scope"], reply.body["client_name"]) == (
            ["authorization_code"], "albums openid photos", "registered client")

    def test_registered_clients_are_capped(self) -> None:
        for _ in range(3):
            assert self.register().code == 201
        self.assert_unchanged(self.journal_size(), self.register(), 403, "access_denied")
        # Clients an administrator made do not count.
        assert len(self.server.state.clients) == 3 + 5

    def test_a_source_is_rate_limited(self) -> None:
        self.server.ctx.config = attrs.evolve(self.server.ctx.config, registration_max_clients=100)
        for _ in range(5):
            assert self.register().code == 201
        before = self.journal_size()
        reply = self.register()
        assert reply.code == 429 and reply.header("retry-after"), reply
        assert self.journal_size() == before
        self.clock.advance(720)
        assert self.register().code == 201

    def test_discovery_lists_the_registration_endpoint(self) -> None:
        reply = self.request("GET", "/.well-known/openid-configuration")
        assert reply.body["registration_endpoint"] == f"https://auth.example.com{REGISTER}"


class ClosedPolicyTests(RegistrationCase):
    config_values = {"registration_scopes": ["photos"]}

    def test_registration_needs_an_initial_access_token(self) -> None:
        before = self.journal_size()
        reply = self.register()
        assert reply.code == 401 and reply.header("www-authenticate", ).startswith("Bearer"), reply
        self.assert_unchanged(before, self.register(headers=bearer("nonsense")), 401, "invalid_token")

    def test_an_initial_access_token_registers(self) -> None:
        secret, _ = self.successResultOf(self.server.issue_token(scope="register", lifetime=3600))
        reply = self.register(headers=bearer(secret))
        assert reply.code == 201 and reply.body["scope"] == "photos", reply

    def test_an_expired_initial_access_token_is_refused(self) -> None:
        secret, _ = self.successResultOf(self.server.issue_token(scope="register", lifetime=60))
        self.clock.advance(60)
        self.assert_unchanged(self.journal_size(), self.register(headers=bearer(secret)), 401, "invalid_token")

    def test_a_token_without_the_register_scope_is_refused(self) -> None:
        for owner in ({}, {"client": self.client}, {"user": "alice", "kind": "app"}):
            secret, _ = self.successResultOf(self.server.issue_token(
                scope="register" if owner else "photos", lifetime=3600, **owner))
            before = self.journal_size()
            reply = self.register(headers=bearer(secret))
            self.assert_unchanged(before, reply, 403, "insufficient_scope")
            assert 'scope="register"' in (reply.header("www-authenticate") or ""), reply


class LimitedUsesTests(RegistrationCase):
    """
    An initial access token issued with C{--uses N} allows N registrations,
    then is revoked.
    """

    config_values = {"registration_scopes": ["photos"]}

    def limited(self, uses: int) -> tuple[str, Token]:
        minted = self.successResultOf(self.server.store.commit(admin_tokens.issue_by_hand(
            self.server.ctx, label="frames", scope="register", lifetime=3600, uses=uses)))
        return minted.secret, minted.token

    def test_a_token_with_two_uses_registers_two_clients_then_is_gone(self) -> None:
        secret, token = self.limited(2)
        assert self.register(headers=bearer(secret)).code == 201
        assert self.server.ctx.state.uses.left(token.key) == 1
        assert self.register(headers=bearer(secret)).code == 201
        self.assert_unchanged(self.journal_size(), self.register(headers=bearer(secret)), 401, "invalid_token")
        assert self.server.ctx.state.token(token.key, self.clock.seconds()) is None
        assert self.server.ctx.state.uses.left(token.key) is None
        self.restart()
        self.assert_unchanged(self.journal_size(), self.register(headers=bearer(secret)), 401, "invalid_token")

    def test_two_registrations_decided_on_the_last_use_register_one_client(self) -> None:
        secret, token = self.limited(1)
        ctx, store = self.server.ctx, self.server.store
        first, second = (registration.register(ctx, {"redirect_uris": [CB]}, secret, IP) for _ in "ab")
        assert "client_id" in self.successResultOf(store.commit(first))
        before = (self.journal_size(), dict(ctx.state.clients))
        self.failureResultOf(store.commit(second), OAuthError)
        assert (self.journal_size(), ctx.state.clients) == before
        assert ctx.state.token(token.key, self.clock.seconds()) is None

    def test_the_uses_left_survive_a_restart_and_compaction(self) -> None:
        secret, token = self.limited(3)
        assert self.register(headers=bearer(secret)).code == 201
        self.restart()
        assert self.server.ctx.state.uses.left(token.key) == 2
        rebuilt = State()
        replay(rebuilt, self.server.ctx.state.snapshot(self.clock.seconds()), self.clock.seconds())
        assert rebuilt.uses.left(token.key) == 2

    def test_only_an_initial_access_token_has_uses(self) -> None:
        ctx = self.server.ctx
        for wrong in ({"scope": "photos"}, {"scope": "register", "client_id": self.client.id},
                      {"scope": "register", "uses": 0 - 1}, {"scope": "register", "uses": 1001}):
            fields: dict[str, Any] = {"label": "x", "lifetime": 60, "uses": 2, **wrong}
            with self.assertRaises(InvalidValue):
                admin_tokens.issue_by_hand(ctx, **fields)


ERRORS: list[tuple[object, str, str]] = [
    ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris"),
    ({}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": ["http://rp.example/cb"]}, "invalid_redirect_uri", "https"),
    ({"redirect_uris": ["https://rp.example/cb#frag"]}, "invalid_redirect_uri", "fragment"),
    ({"redirect_uris": ["https://*.rp.example/cb"]}, "invalid_redirect_uri", "wildcard"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "private-use"),
    ({"redirect_uris": "https://rp.example/cb"}, "invalid_client_metadata", "redirect_uris"),
    ({"redirect_uris": [CB] * 17}, "invalid_client_metadata", "redirect_uris"),
    ({"redirect_uris": [f"{CB}{i}" for i in range(17)]}, "invalid_client_metadata", "redirect_uris"),
    ({"redirect_uris": [CB], "grant_types": ["password"]}, "invalid_client_metadata", "grant_types"),
    ({"redirect_uris": [CB], "grant_types": ["implicit"]}, "invalid_client_metadata", "grant_types"),
    ({"redirect_uris": [CB], "grant_types": []}, "invalid_client_metadata", "grant_types"),
    ({"redirect_uris": [CB], "response_types": ["token"]}, "invalid_client_metadata", "response_types"),
    ({"grant_types": ["client_credentials"], "response_types": ["code"]},
     "invalid_client_metadata", "response_types"),
    ({"redirect_uris": [CB], "response_types": []}, "invalid_client_metadata", "response_types"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"},
     "invalid_client_metadata", "grant_types"),
    ({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"},
     "invalid_client_metadata", "token_endpoint_auth_method"),
    ({"redirect_uris": [CB], "scope": "photos users"}, "invalid_client_metadata", "scope"),
    ({"redirect_uris": [CB], "scope": "*"}, "invalid_client_metadata", "scope"),
    ({"redirect_uris": [CB], "scope": "nonsense"}, "invalid_client_metadata", "scope"),
    ({"redirect_uris": [CB], "scope": ""}, "invalid_client_metadata", "scope"),
    ({"redirect_uris": [CB], "scope": ["photos"]}, "invalid_client_metadata", "scope"),
    ({"redirect_uris": [CB], "client_name": ""}, "invalid_client_metadata", "client_name"),
    ({"redirect_uris": [CB], "client_name": "x" * 201}, "invalid_client_metadata", "client_name"),
    ({"redirect_uris": [CB], "client_name": "a\u0007b"}, "invalid_client_metadata", "client_name"),
    ({"redirect_uris": [CB], "client_name": 7}, "invalid_client_metadata", "client_name"),
    ({"redirect_uris": [CB], "contacts": "ops@rp.example"}, "invalid_client_metadata", "contacts"),
    ({"redirect_uris": [CB], "contacts": [""]}, "invalid_client_metadata", "contacts"),
    ({"redirect_uris": [CB], "contacts": [None]}, "invalid_client_metadata", "contacts"),
    ({"redirect_uris": [CB], "logo_uri": "com.example.app:/x"}, "invalid_client_metadata", "logo_uri"),
    ({"redirect_uris": [CB], "client_uri": "https://rp.example/#x"}, "invalid_client_metadata", "client_uri"),
    ({"redirect_uris": [CB], "policy_uri": "http://rp.example/p"}, "invalid_client_metadata", "policy_uri"),
    ({"redirect_uris": [CB], "tos_uri": "not a uri"}, "invalid_client_metadata", "tos_uri"),
    ({"redirect_uris": [CB], "post_logout_redirect_uris": ["http://rp.example/"]},
     "invalid_client_metadata", "post_logout_redirect_uris"),
    ({"redirect_uris": [CB], "id_token_signed_response_alg": "none"},
     "invalid_client_metadata", "id_token_signed_response_alg"),
    ({"redirect_uris": [CB], "software_id": " "}, "invalid_client_metadata", "software_id"),
    ({"redirect_uris": [CB], "software_version": {"v": 1}}, "invalid_client_metadata", "software_version"),
]


class MetadataErrorTests(RegistrationCase):
    def test_every_metadata_error_names_its_field_and_changes_nothing(self) -> None:
        before = self.journal_size()
        for metadata, error, named in ERRORS:
            reply = self.register(metadata)
            self.assert_unchanged(before, reply, 400, error)
            assert named in reply.body["error_description"], (metadata, reply)

    def test_hostile_bodies_are_precise_refusals(self) -> None:
        before = self.journal_size()
        bodies = [
            (b'{"redirect_uris": ["https://a.example/"], "redirect_uris": ["https://b.example/"]}', "repeated"),
            (b'{"contacts": [{"a": 1, "a": 2}]}', "repeated"),
            (b'["redirect_uris"]', "object"),
            (b'{"client_name": "\\ud800", "redirect_uris": ["https://a.example/"]}', "UTF-8"),
            (b'\xff{}', "UTF-8"),
            (b'{"n": NaN}', "JSON"),
            (b"[" * 60_000, "JSON"),
            (b'', "JSON"),
        ]
        for body, named in bodies:
            reply = self.register(body=body, json_body=None, headers={"Content-Type": "application/json"})
            self.assert_unchanged(before, reply, 400, "invalid_request")
            assert named in reply.body["error_description"], (body[:40], reply)
        form = self.register(body=b"redirect_uris=x", json_body=None,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assert_unchanged(before, form, 400, "invalid_request")
        big = self.register({"client_name": "x" * 70_000})
        assert big.code == 413 and self.journal_size() == before, big


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from([CB, "http://127.0.0.1/cb", "none", "code", "authorization_code", "photos"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = st.sampled_from([
    "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method", "client_name",
    "scope", "contacts", "logo_uri", "client_uri", "policy_uri", "tos_uri", "post_logout_redirect_uris",
    "id_token_signed_response_alg", "software_id", "software_version", "client_id", "other",
])


class FuzzTests(RegistrationCase):
    @settings(max_examples=200, deadline=None)
    @given(metadata=st.dictionaries(_FIELDS, _JSON, max_size=6) | _JSON)
    def test_any_json_is_answered_precisely(self, metadata: object) -> None:
        """
        Whatever JSON arrives, the answer is a registration or a precise
        refusal that changes nothing; never a server error.
        """
        before = self.journal_size()
        reply = self.register(body=json.dumps(metadata).encode(), json_body=None,
                              headers={"Content-Type": "application/json"})
        assert reply.code in (201, 400, 403, 429), reply
        if reply.code != 201:
            assert self.journal_size() == before and reply.body["error"], reply


class ManagementTests(RegistrationCase):
    def setUp(self) -> None:
        super().setUp()
        self.audit = Events()
        self.server.store.audit_sink = self.audit
        reply = self.register({"redirect_uris": [CB], "client_name": "Frame", "scope": "photos",
                               "grant_types": ["authorization_code", "client_credentials"]})
        assert reply.code == 201, reply
        self.registered = reply.body
        self.uri = f"{REGISTER}/{reply.body['client_id']}"
        self.auth = bearer(reply.body["registration_access_token"])

    def test_read(self) -> None:
        reply = self.request("GET", self.uri, headers=self.auth)
        assert reply.code == 200, reply
        # RFC 7592 section 3: the registration access token is in every answer.
        expected = {k: v for k, v in self.registered.items()
                    if k not in ("client_secret", "client_secret_expires_at")}
        assert reply.body == expected

    def test_the_wrong_token_or_client_is_refused_alike(self) -> None:
        other = self.register().body
        before = self.journal_size()
        for path, headers in [(self.uri, {}), (self.uri, bearer("nonsense")),
                              (self.uri, bearer(other["registration_access_token"])),
                              (f"{REGISTER}/{self.client.id}", self.auth),
                              (f"{REGISTER}/nobody", self.auth)]:
            for method in ("GET", "PUT", "DELETE"):
                reply = self.request(method, path, headers=headers, json_body={"redirect_uris": [CB]})
                assert reply.code == 401 and reply.header("www-authenticate").startswith("Bearer"), reply
        assert self.journal_size() == before
        assert self.registered["client_id"] in self.server.state.clients

    def test_update_replaces_the_metadata(self) -> None:
        reply = self.request("PUT", self.uri, headers=self.auth, json_body={
            "client_id": self.registered["client_id"], "client_secret": self.registered["client_secret"],
            "redirect_uris": ["https://rp.example/new"], "client_name": "Frame 2"})
        assert reply.code == 200, reply
        assert (reply.body["client_name"], reply.body["redirect_uris"], reply.body["grant_types"],
                reply.body["scope"]) == ("Frame 2", ["https://rp.example/new"], ["authorization_code"],
                                         "albums openid photos")
        client = self.server.state.clients[self.registered["client_id"]]
        assert client.name == "Frame 2"
        # The secret stayed.
        token = self.token({"grant_type": "client_credentials"},
                           auth=(client.id, self.registered["client_secret"]))
        assert token.code == 400 and token.body["error"] == "unauthorized_client", token

    def test_update_is_validated_and_may_not_change_the_id_or_secret(self) -> None:
        before = self.journal_size()
        own = {"client_id": self.registered["client_id"]}
        for body, named in [({**own, "redirect_uris": ["http://rp.example/"]}, "redirect_uris"),
                            ({"redirect_uris": [CB], "client_id": "c000000000000000"}, "client_id"),
                            # RFC 7592 section 2.2: the id must be sent.
                            ({"redirect_uris": [CB]}, "client_id"),
                            ({**own, "redirect_uris": [CB], "client_secret": "guess"}, "client_secret"),
                            ({**own, "redirect_uris": [CB], "token_endpoint_auth_method": "none"},
                             "token_endpoint_auth_method")]:
            reply = self.request("PUT", self.uri, headers=self.auth, json_body=body)
            assert reply.code == 400 and named in reply.body["error_description"], reply
        assert self.journal_size() == before

    def test_a_hostile_update_changes_nothing(self) -> None:
        before = self.journal_size()
        for body in (b'{"redirect_uris": ["https://a.example/"], "redirect_uris": []}', b"[]", b"{"):
            reply = self.request("PUT", self.uri, headers={**self.auth, "Content-Type": "application/json"},
                                 body=body)
            self.assert_unchanged(before, reply, 400, "invalid_request")
        assert self.server.state.clients[self.registered["client_id"]].redirect_uris == (CB,)

    def test_delete_removes_the_client_and_revokes_its_tokens(self) -> None:
        token = self.token({"grant_type": "client_credentials"},
                           auth=(self.registered["client_id"], self.registered["client_secret"]))
        assert token.code == 200, token
        reply = self.request("DELETE", self.uri, headers=self.auth)
        assert (reply.code, reply.body) == (204, None), reply
        assert self.registered["client_id"] not in self.server.state.clients
        assert self.server.authenticate_token(token.body["access_token"]) is None
        assert self.request("GET", self.uri, headers=self.auth).code == 401
        events = [(event, fields.get("client")) for event, _, fields in self.audit.events
                  if event.startswith("register.")]
        client_id = self.registered["client_id"]
        assert events[:2] == [("register.add", client_id), ("register.delete", client_id)], events
        assert events[-1][0] == "register.refuse", events
        secrets = (self.registered["registration_access_token"], self.registered["client_secret"])
        assert not any(secret in repr(self.audit.events) for secret in secrets)

    def test_registrations_survive_a_restart(self) -> None:
        self.restart()
        assert self.request("GET", self.uri, headers=self.auth).code == 200

