"""
Client authentication (RFC 6749 section 2.3): a confidential client by its
secret, Basic or in the body but never both; a public one by its id alone.
"""

from __future__ import annotations

import hmac

from attrs import frozen

from oauthd.protocol import errors, tokens
from oauthd.protocol.context import Context
from oauthd.protocol.errors import deny
from oauthd.protocol.limits import CLIENT, LOGIN_IP, ip_key, refuse
from oauthd.state.entities import Client

METHODS = frozenset({"client_secret_basic", "client_secret_post", "none"})
"""
The client authentication methods of the token, revocation and
introspection endpoints.
"""


@frozen
class ClientAuth:
    """
    The client credentials a request offered.

    @ivar basic: client id and secret from C{Authorization: Basic}, already
        form-decoded (RFC 6749 section 2.3.1).
    @ivar client_id: the C{client_id} body parameter.
    @ivar client_secret: the C{client_secret} body parameter.
    """

    basic: tuple[str, str] | None = None
    client_id: str = ""
    client_secret: str = ""


def authenticate_client(ctx: Context, client_id: str, secret: str) -> Client | None:
    """
    The enabled confidential client with this id and secret. One SHA-256 and
    a constant-time compare: see L{tokens.secret_digest}.
    """
    client = ctx.state.clients.get(client_id)
    if client is None or not client.enabled or client.public:
        return None
    if not hmac.compare_digest(tokens.secret_digest(secret), client.secret_digest):
        return None
    return client


def identify_client(ctx: Context, auth: ClientAuth, ip: str) -> Client | None:
    """
    The client a request comes from, authenticated; C{None} if the request
    offered no client credentials at all.

    @raise OAuthError: C{invalid_request} for two methods at once,
        C{invalid_client} (401) for anything that does not authenticate, or
        429 once the failure limits are reached.
    """
    basic = auth.basic is not None
    if auth.basic is not None:
        if auth.client_secret:
            raise errors.invalid_request("use one client authentication method, not two")
        client_id, secret = auth.basic
        if auth.client_id and auth.client_id != client_id:
            raise errors.invalid_request("client_id differs from the Authorization header")
    elif auth.client_id:
        client_id, secret = auth.client_id, auth.client_secret
    elif auth.client_secret:
        raise errors.invalid_request("client_secret was sent without client_id")
    else:
        return None
    client = ctx.state.clients.get(client_id)
    if secret:
        found = authenticate_client(ctx, client_id, secret)
        if found is not None:
            return found
        if client is None:
            reason = "unknown client"
        elif not client.enabled:
            reason = "client disabled"
        elif client.public:
            reason = "a public client sent a secret"
        else:
            reason = "wrong client secret"
    elif client is not None and client.public and client.enabled:
        return client
    else:
        reason = "no client secret" if client is not None else "unknown client"
    charges = [(LOGIN_IP, ip_key(ip))]
    if client is not None:
        charges.append((CLIENT, client.id))
    raise refuse(
        ctx.limiter, errors.invalid_client("client authentication failed", basic), ip, charges,
        client=client.id if client is not None else "", reason=reason,
    )


def required_client(ctx: Context, auth: ClientAuth, ip: str) -> Client:
    """
    L{identify_client}, where a client must authenticate.
    """
    client = identify_client(ctx, auth, ip)
    if client is None:
        raise deny(errors.invalid_client("client authentication is required", False), ip=ip)
    return client
