"""
The OpenID claims about a user (OpenID Connect Core section 5.4), by the
scope that grants them: what userinfo answers, and what an ID token carries
for a client that asked for them there too.
"""

from __future__ import annotations

from oauthd.protocol import scopes
from oauthd.protocol.context import Body
from oauthd.protocol.subjects import of_user
from oauthd.state.entities import User

BY_SCOPE = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
    "address": ("address",),
}
"""
The claims each scope grants (C{openid} grants C{sub}).
"""

CLAIMS = frozenset({"sub", *(claim for named in BY_SCOPE.values() for claim in named)})
"""
The claims userinfo can return.
"""


def about(user: User, scope: str) -> Body:
    """
    The claims about C{user} that C{scope} grants; one whose field is
    unset is left out rather than given empty.
    """
    claims: Body = {"sub": of_user(user)}
    if scopes.permits(scope, "profile"):
        if user.full_name:
            claims["name"] = user.full_name
        claims["preferred_username"] = user.name
        updated_at = user.updated_at or user.created_at
        if updated_at:
            claims["updated_at"] = updated_at
    if scopes.permits(scope, "email") and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    if scopes.permits(scope, "address") and user.address:
        claims["address"] = {"formatted": user.address}
    return claims
