"""
The token endpoint (RFC 6749 sections 4-6): one module per grant type, and
the dispatch between them.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from oauthd.protocol import errors
from oauthd.protocol.clientauth import ClientAuth, required_client
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny, safe_text
from oauthd.protocol.grants import (
    app_password,
    authorization_code,
    client_credentials,
    device_code,
    password,
    refresh,
)
from oauthd.protocol.rules import GRANT_TYPES
from oauthd.state.decision import Decision

SERVED = frozenset({
    "authorization_code", "client_credentials", "password", "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
})
"""
The grant types the token endpoint serves (the others in
L{oauthd.protocol.rules.GRANT_TYPES} get C{unsupported_grant_type} until
built).
"""


def token(
    ctx: Context, params: Params, auth: ClientAuth, ip: str, presented: str | None = None,
) -> Decision[Body] | Deferred[Decision[Body]]:
    """
    Decide a token request: what to issue (and revoke), and the RFC 6749
    section 5.1 body (plus PhotoPrism's C{status}, C{session_id} and
    C{client_name}) to answer with once that is durable. The password grant
    checks a password off the reactor first, so its decision comes later.

    @param presented: the token in C{X-Auth-Token} (or C{Authorization:
        Bearer}): a user's login session minting an app password, when no
        client identifies itself.
    """
    grant_type = params.get("grant_type", "")
    if (grant_type in app_password.GRANT_TYPES and presented is not None
            and auth == ClientAuth()):
        return Deferred.fromCoroutine(app_password.decide(ctx, params, presented, ip))
    if grant_type and grant_type not in SERVED:
        # The caller is told what it sent; the audit trail keeps a fixed
        # reason, and the grant type only if it is one oauthd knows (what
        # was sent may be anything, a pasted secret included).
        raise deny(
            errors.unsupported_grant_type(f"grant type {safe_text(grant_type)} is not supported"),
            reason="unsupported grant type", grant=grant_type if grant_type in GRANT_TYPES else "",
        )
    client = required_client(ctx, auth, ip)
    if not grant_type:
        if client.public:
            raise deny(errors.invalid_request("grant_type is required"), client=client.id)
        # PhotoPrism: an authenticated request without a grant type asks
        # for client credentials.
        grant_type = "client_credentials"
    if grant_type not in client.grant_types:
        raise deny(
            errors.unauthorized_client(f"this client may not use the {grant_type} grant"),
            ip=ip, client=client.id, grant=grant_type,
        )
    if grant_type == "client_credentials":
        return client_credentials.decide(ctx, client, params, ip)
    if grant_type == "password":
        return Deferred.fromCoroutine(password.decide(ctx, client, params, ip))
    if grant_type == "authorization_code":
        return authorization_code.decide(ctx, client, params, ip)
    if grant_type == device_code.GRANT_TYPE:
        return device_code.decide(ctx, client, params, ip)
    return refresh.decide(ctx, client, params, ip)
