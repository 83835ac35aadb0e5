"""
The userinfo endpoint (OpenID Connect Core section 5.3).
"""

from __future__ import annotations

from oauthd.protocol import claims, errors, scopes
from oauthd.protocol.bearer import bearer
from oauthd.protocol.context import Body, Context
from oauthd.protocol.errors import deny

CLAIMS = claims.CLAIMS


def userinfo(ctx: Context, presented: str | None, ip: str) -> Body:
    """
    The claims about the user a token is bound to, as its scope allows
    (L{claims.about}): C{sub} (the user's subject id) always, the others
    with C{profile}, C{email} and C{address}. The token needs the C{openid}
    scope.

    A token bound to no user (client credentials) is refused with 401
    C{invalid_token}: RFC 6750 section 3.1's "invalid for other reasons";
    there is no user to describe.
    """
    token = bearer(ctx, presented, ip)
    user = ctx.state.users.get(token.user) if token.user else None
    if user is None or user.disabled:
        raise deny(errors.invalid_token("the access token is not bound to a user"),
                   ip=ip, token=token.handle, client=token.client_id)
    if not scopes.permits(token.scope, "openid"):
        raise deny(errors.insufficient_scope("openid"), ip=ip, token=token.handle)
    return claims.about(user, token.scope)
