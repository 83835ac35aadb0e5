"""
Tests for the discovery documents and the HTTP basics every response shares.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from werkzeug.exceptions import BadHost

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oauthd.config import build_config
from oauthd.protocol.discovery import ENDPOINT_PATHS, Capabilities
from oauthd.web.api import OAuthHTTP
from tests.helpers import make_server, make_config, make_http

ISSUER = "https://auth.example.com/base"

RFC8414_FIELDS = {
    "issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
    "registration_endpoint", "scopes_supported", "response_types_supported",
    "response_modes_supported", "grant_types_supported",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported", "service_documentation",
    "ui_locales_supported", "op_policy_uri", "op_tos_uri", "revocation_endpoint",
    "revocation_endpoint_auth_methods_supported",
    "revocation_endpoint_auth_signing_alg_values_supported", "introspection_endpoint",
    "introspection_endpoint_auth_methods_supported",
    "introspection_endpoint_auth_signing_alg_values_supported",
    "code_challenge_methods_supported",
    # Registered later: RFC 8628 and RFC 9207.
    "device_authorization_endpoint", "authorization_response_iss_parameter_supported",
}
OIDC_FIELDS = RFC8414_FIELDS | {
    "userinfo_endpoint", "end_session_endpoint", "acr_values_supported",
    "subject_types_supported", "id_token_signing_alg_values_supported",
    "claims_supported", "claims_parameter_supported", "request_parameter_supported",
    "request_uri_parameter_supported",
}

ALL = Capabilities(
    endpoints=frozenset(ENDPOINT_PATHS),
    grant_types=frozenset({"client_credentials", "password", "refresh_token"}),
    client_auth_methods=frozenset({"client_secret_basic", "client_secret_post", "none"}),
    claims=frozenset({"sub", "name", "email"}),
    id_token_algs=frozenset({"RS256", "ES256"}),
)


class DiscoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = make_http(make_config(issuer=ISSUER))
        self.treq = StubTreq(self.http.resource())

    def get(self, path: str, method: str = "GET") -> tuple[Any, Any]:
        response = self.successResultOf(self.treq.request(method, "http://x" + path))
        body = self.successResultOf(response.content())
        return response, json.loads(body) if body else None

    def check_document(self, doc: dict[str, Any], allowed: set[str]) -> None:
        assert doc["issuer"] == ISSUER
        assert set(doc) <= allowed, set(doc) - allowed
        for key, value in doc.items():
            assert value != "", key
            if key.endswith("_endpoint") or key == "jwks_uri":
                assert value.startswith(ISSUER + "/"), (key, value)
            if isinstance(value, list):
                assert value == sorted(value), key

    def test_authorization_server_metadata(self) -> None:
        """
        The RFC 8414 document has only registered fields, the exact issuer,
        absolute URLs under it, sorted lists, and no empty strings.
        """
        response, doc = self.get("/.well-known/oauth-authorization-server")
        assert response.code == 200
        assert response.headers.getRawHeaders("content-type") == ["application/json"]
        self.check_document(doc, RFC8414_FIELDS)
        assert doc["scopes_supported"] == sorted(doc["scopes_supported"])
        assert "openid" in doc["scopes_supported"]

    def test_unimplemented_endpoints_are_omitted(self) -> None:
        """
        Nothing is advertised that is not served: no endpoint fields at all
        when no endpoint is mounted, and no response types without authorize.
        """
        self.http.capabilities = Capabilities()
        _, doc = self.get("/.well-known/openid-configuration")
        assert not [k for k in doc if k.endswith("_endpoint") or k == "jwks_uri"]
        assert doc["response_types_supported"] == []
        assert doc["grant_types_supported"] == []

    def test_documents_follow_capabilities(self) -> None:
        """
        Every implemented endpoint appears at PhotoPrism's path under the
        issuer; OpenID-only fields appear only in openid-configuration.
        """
        self.http.capabilities = ALL
        _, oauth = self.get("/.well-known/oauth-authorization-server")
        _, oidc = self.get("/.well-known/openid-configuration")
        self.check_document(oauth, RFC8414_FIELDS)
        self.check_document(oidc, OIDC_FIELDS)
        assert oauth["token_endpoint"] == ISSUER + "/api/v1/oauth/token"
        assert oauth["revocation_endpoint"] == ISSUER + "/api/v1/oauth/revoke"
        assert oauth["introspection_endpoint"] == ISSUER + "/api/v1/oauth/introspect"
        assert oauth["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
        assert "userinfo_endpoint" not in oauth
        assert oidc["userinfo_endpoint"] == ISSUER + "/api/v1/oauth/userinfo"
        assert oidc["end_session_endpoint"] == ISSUER + "/api/v1/oauth/logout"
        assert oauth["grant_types_supported"] == ["client_credentials", "password", "refresh_token"]
        assert oauth["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post", "none"]
        assert oauth["introspection_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post"]
        assert oauth["code_challenge_methods_supported"] == ["S256"]
        assert oauth["response_types_supported"] == ["code"]
        assert oidc["subject_types_supported"] == ["public"]
        assert oidc["claims_supported"] == ["email", "name", "sub"]
        assert oidc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
        assert (oidc["request_parameter_supported"], oidc["request_uri_parameter_supported"],
                oidc["claims_parameter_supported"]) == (False, False, False)
        assert "userinfo_signing_alg_values_supported" not in oidc
        assert {k: v for k, v in oidc.items() if k in oauth} == oauth

    def test_discovery_is_stable(self) -> None:
        """
        Two fetches give byte-identical documents (PhotoPrism shuffles scopes).
        """
        first = self.successResultOf(self.treq.get("http://x/.well-known/openid-configuration"))
        second = self.successResultOf(self.treq.get("http://x/.well-known/openid-configuration"))
        assert self.successResultOf(first.content()) == self.successResultOf(second.content())

    def test_healthz(self) -> None:
        response, body = self.get("/healthz")
        assert (response.code, body) == (200, {"status": "ok"})

    def test_every_response_has_nosniff(self) -> None:
        for path in ("/healthz", "/.well-known/openid-configuration", "/missing"):
            response, _ = self.get(path)
            assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]

    def test_unknown_path_is_json_404(self) -> None:
        response, body = self.get("/api/v1/nothing/here")
        assert response.code == 404
        assert body["error"] == "not_found"
        assert response.headers.getRawHeaders("content-type") == ["application/json"]

    def test_wrong_method_is_json_405_with_allow(self) -> None:
        for method in ("POST", "PUT", "DELETE"):
            response, body = self.get("/.well-known/oauth-authorization-server", method)
            assert response.code == 405
            assert body["error"] == "method_not_allowed"
            assert response.headers.getRawHeaders("allow") == ["GET, HEAD"]

    def test_hostile_paths_never_500(self) -> None:
        response, body = self.get("/%ff%fe")
        assert (response.code, body["error"]) == (400, "invalid_request")
        for path in ("/..%2f..%2fetc/passwd", "/" + "a" * 5000, "/%00", "/.well-known/"):
            response, body = self.get(path)
            assert response.code == 404, path
            assert body["error"] == "not_found"

    def test_a_host_that_is_not_utf8_is_refused_as_json(self) -> None:
        for host, status in ((b"\xff", 400), (b"\xff:80", 400), (b"\xc3\xa9.example:80", 200), (b"x:\xff", 400)):
            response = self.successResultOf(self.treq.get("http://x/healthz", headers={b"Host": [host]}))
            body = json.loads(self.successResultOf(response.content()))
            assert response.code == status, host
            assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]
            if status == 400:
                assert body["error"] == "invalid_request"

    def test_a_host_that_names_no_host_is_refused_as_json_never_500(self) -> None:
        """
        A Host Klein's URL map cannot bind (an empty label, one over 63
        characters) is refused like one that is not UTF-8, on every route,
        answered at once or refused: never a 500 in HTML.
        """
        long = b"a" * 64
        for host in (b"127..0.1", b".example", b"a..b:80", long, long + b".example", b"[.x]:80", b"x." + long):
            for method, path in (("GET", "/missing"), ("POST", "/api/v1/oauth/token"), ("GET", "/healthz")):
                response = self.successResultOf(self.treq.request(method, "http://x" + path, headers={b"Host": [host]}))
                content = self.successResultOf(response.content())
                assert response.code == 400, (host, path, response.code, content)
                assert json.loads(content)["error"] == "invalid_request"
                assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]
        for host in (b"example.com.", b"a" * 63 + b".example:80", b"[::1]:80", b"x:y"):
            response = self.successResultOf(self.treq.get("http://x/healthz", headers={b"Host": [host]}))
            assert response.code == 200, host


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:9478", "https://a.example/x/y"])
def test_issuer_is_exactly_the_configured_one(issuer: str) -> None:
    from oauthd.protocol.discovery import openid_configuration

    assert openid_configuration(build_config({"issuer": issuer + "/"}), ALL)["issuer"] == issuer


_HOST_PARTS = st.sampled_from(
    [b".", b":", b"[", b"]", b"80", b"a", b"b" * 30, b"\xc3\xa9", b"\xff", b"\xe2\x80\x8b", b"-"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_HOST_PARTS, max_size=8).map(b"".join))
def test_any_host_is_routed_as_klein_binds_it_or_refused_as_json(host: bytes) -> None:
    """
    Whatever the Host: an unknown path is a JSON 404, or a JSON 400 when
    Klein's URL map cannot bind the host (never a 500); a route answered at
    once is refused the same way rather than answered for a host Klein
    refuses.
    """
    from werkzeug.routing import Map

    try:
        name = host.decode("utf-8")
        match = re.match(r"^\[?(?P<host>.*?)\]?(:\d+)?$", name)
        assert match is not None
        Map().bind(match.group("host") + ":8080")
        routable = True
    except (UnicodeDecodeError, BadHost):
        routable = False
    treq = StubTreq(_SHARED.resource())
    for path, found in (("/missing", 404), ("/healthz", 200)):
        response = _settled(treq, treq.get("http://x" + path, headers={b"Host": [host]}))
        assert response.code == (found if routable else 400), (host, path)
        assert response.headers.getRawHeaders("content-type") == ["application/json"]


_SHARED = make_http(make_config())


def _settled(treq: StubTreq, d: Any) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    treq.flush()
    assert got and not isinstance(got[0], Failure), got
    return got[0]
