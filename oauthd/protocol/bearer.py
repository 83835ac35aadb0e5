"""
Bearer tokens (RFC 6750): the live token a request presents as its
credential, or the precise refusal.
"""

from __future__ import annotations

from oauthd.protocol import errors, scopes
from oauthd.protocol.context import Context
from oauthd.protocol.errors import deny
from oauthd.protocol.limits import TOKEN_IP, ip_key, refuse
from oauthd.protocol.lookup import authenticate_token
from oauthd.state.entities import ACCESS, APP_PASSWORD, SESSION, Token

BEARER_KINDS = frozenset({ACCESS, APP_PASSWORD, SESSION})
"""
Token kinds that may be presented as a bearer token; a refresh token may not.
"""


def bearer(ctx: Context, presented: str | None, ip: str) -> Token:
    """
    The live token a request presented as its bearer credential.

    @raise OAuthError: 401 with a bare Bearer challenge if none was
        presented; 401 C{invalid_token} if it is malformed, unknown, expired,
        revoked or not a bearer token; 429 once the address has failed too
        often.
    """
    if presented is None:
        raise errors.missing_token()
    token = authenticate_token(ctx, presented)
    if token is None or token.kind not in BEARER_KINDS:
        raise refuse(ctx.limiter, errors.invalid_token("the access token is invalid, expired or revoked"),
                     ip, [(TOKEN_IP, ip_key(ip))])
    return token


def bearer_with_scope(ctx: Context, presented: str | None, ip: str, scope: str) -> Token:
    """
    The live bearer token a request presented, which must grant C{scope}
    (or C{*}).

    @raise OAuthError: as L{bearer} does; 403 C{insufficient_scope} if the
        token does not grant C{scope}.
    """
    token = bearer(ctx, presented, ip)
    if not scopes.permits(token.scope, scope):
        raise deny(errors.insufficient_scope(scope), ip=ip, token=token.handle)
    return token
