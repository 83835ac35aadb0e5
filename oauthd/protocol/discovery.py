"""
Authorization server metadata (RFC 8414) and OpenID Provider metadata (OpenID
Connect Discovery 1.0), built from the configuration and from what is actually
served: an endpoint that does not exist is left out, never given as an empty
string, and every list is sorted so the documents are stable.
"""

from __future__ import annotations

from attrs import frozen

from oauthd.config import Config

ENDPOINT_PATHS = {
    "authorization_endpoint": "/api/v1/oauth/authorize",
    "token_endpoint": "/api/v1/oauth/token",
    "userinfo_endpoint": "/api/v1/oauth/userinfo",
    "revocation_endpoint": "/api/v1/oauth/revoke",
    "introspection_endpoint": "/api/v1/oauth/introspect",
    "registration_endpoint": "/api/v1/oauth/register",
    "end_session_endpoint": "/api/v1/oauth/logout",
    "device_authorization_endpoint": "/api/v1/oauth/device",
    "jwks_uri": "/.well-known/jwks.json",
}
"""
Every endpoint's path, PhotoPrism's where PhotoPrism has one.
"""

OPENID_ONLY = frozenset({"userinfo_endpoint", "end_session_endpoint"})


@frozen
class Capabilities:
    """
    What the running server implements.

    @ivar endpoints: keys of L{ENDPOINT_PATHS} that are served.
    @ivar grant_types: grant types the token endpoint accepts.
    @ivar client_auth_methods: client authentication methods at the token,
        revocation and introspection endpoints.
    @ivar claims: OpenID claims userinfo and ID tokens can carry.
    @ivar id_token_algs: the algorithms ID tokens can be signed with.
    """

    endpoints: frozenset[str] = frozenset()
    grant_types: frozenset[str] = frozenset()
    client_auth_methods: frozenset[str] = frozenset()
    claims: frozenset[str] = frozenset()
    id_token_algs: frozenset[str] = frozenset()


def endpoint_url(config: Config, name: str) -> str:
    return config.issuer + ENDPOINT_PATHS[name]


def authorization_server_metadata(config: Config, caps: Capabilities) -> dict[str, object]:
    """
    The RFC 8414 document served at C{/.well-known/oauth-authorization-server}.
    """
    doc: dict[str, object] = {"issuer": config.issuer}
    for name in sorted(caps.endpoints - OPENID_ONLY):
        doc[name] = endpoint_url(config, name)
    doc["scopes_supported"] = list(config.scopes)
    doc["response_types_supported"] = (
        ["code"] if "authorization_endpoint" in caps.endpoints else []
    )
    doc["grant_types_supported"] = sorted(caps.grant_types)
    auth_methods = sorted(caps.client_auth_methods)
    if "token_endpoint" in caps.endpoints:
        doc["token_endpoint_auth_methods_supported"] = auth_methods
    if "revocation_endpoint" in caps.endpoints:
        doc["revocation_endpoint_auth_methods_supported"] = auth_methods
    if "introspection_endpoint" in caps.endpoints:
        doc["introspection_endpoint_auth_methods_supported"] = sorted(
            caps.client_auth_methods - {"none"}
        )
    if "authorization_endpoint" in caps.endpoints:
        doc["code_challenge_methods_supported"] = ["S256"]
        doc["response_modes_supported"] = ["form_post", "query"]
        doc["authorization_response_iss_parameter_supported"] = True
    return _issuer_first(doc)


def _issuer_first(doc: dict[str, object]) -> dict[str, object]:
    return dict(sorted(doc.items(), key=lambda kv: (kv[0] != "issuer", kv[0])))


def openid_configuration(config: Config, caps: Capabilities) -> dict[str, object]:
    """
    The OpenID Connect Discovery document served at
    C{/.well-known/openid-configuration}: the RFC 8414 fields plus the OpenID
    Provider ones for what is implemented.
    """
    doc = authorization_server_metadata(config, caps)
    for name in sorted(caps.endpoints & OPENID_ONLY):
        doc[name] = endpoint_url(config, name)
    doc["subject_types_supported"] = ["public"]
    if "jwks_uri" in caps.endpoints and caps.id_token_algs:
        doc["id_token_signing_alg_values_supported"] = sorted(caps.id_token_algs)
    if caps.claims:
        doc["claims_supported"] = sorted(caps.claims)
    # Request objects and the claims parameter are not implemented: said
    # so, since an absent field would mean a default of true for
    # request_uri_parameter_supported (Discovery section 3).
    doc["request_parameter_supported"] = False
    doc["request_uri_parameter_supported"] = False
    doc["claims_parameter_supported"] = False
    return _issuer_first(doc)
