"""
Introspection (RFC 7662), for confidential clients marked as resource
servers and for bearers whose scope names C{introspect}.
"""

from __future__ import annotations

from oauthd.protocol import errors, scopes, subjects
from oauthd.protocol.bearer import bearer
from oauthd.protocol.clientauth import ClientAuth, identify_client
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.lookup import authenticate_token
from oauthd.state.entities import REFRESH, USED_REFRESH


def introspect(ctx: Context, params: Params, auth: ClientAuth, presented: str | None, ip: str) -> Body:
    """
    Describe a token to an authenticated confidential client marked as a
    resource server, or to a bearer with the C{introspect} scope. A live
    token gets its details; anything else exactly C{{"active": false}}.

    Any other client is refused with 403 C{unauthorized_client}: it did
    authenticate (so not 401 C{invalid_client}), and an answer of
    C{{"active": false}} would have a misconfigured resource server refuse
    every token with no hint why.

    Misses are not charged to the rate limits: a resource server passes on
    whatever tokens its own clients send.
    """
    client = identify_client(ctx, auth, ip)
    if client is not None:
        if client.public:
            raise deny(errors.invalid_client("a public client cannot introspect", auth.basic is not None),
                       ip=ip, client=client.id)
        if not client.introspect:
            raise deny(errors.OAuthError(
                "unauthorized_client",
                "the client is not a resource server: it may not introspect tokens", 403,
            ), ip=ip, client=client.id)
    elif presented is not None:
        caller = bearer(ctx, presented, ip)
        # Named explicitly: "*" (every login session has it) does not open
        # other people's tokens to inspection.
        if "introspect" not in scopes.names(caller.scope):
            raise deny(errors.insufficient_scope("introspect"), ip=ip, token=caller.handle)
    else:
        raise deny(errors.invalid_client("client authentication is required", False), ip=ip)
    target = params.get("token", "")
    if not target:
        raise errors.invalid_request("token is required")
    token = authenticate_token(ctx, target)
    if token is None or token.kind == USED_REFRESH:
        return {"active": False}
    body: Body = {
        "active": True,
        "scope": token.scope,
        "client_id": token.client_id,
        "username": token.user,
        "token_type": "refresh_token" if token.kind == REFRESH else "Bearer",
        "exp": token.expires_at,
        "iat": token.issued_at,
        "sub": subjects.of_token(ctx.state, token),
        "iss": ctx.config.issuer,
    }
    return {k: v for k, v in body.items() if v not in ("", 0)}
