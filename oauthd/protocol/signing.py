"""
PLACEHOLDER for the signing API that branch i15-keys builds (see the
design's "keys" section): the same signatures, over one RSA key made per
process, so that logout can be built and tested before the keys land. The
merge of i15-keys replaces this whole file with theirs.
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from oauthd.protocol.context import Context

_KEY = RSAKey.generate_key(2048, auto_kid=True)


def sign(ctx: Context, claims: dict[str, Any], alg: str = "RS256", typ: str = "JWT") -> str:
    return jwt.encode({"alg": alg, "kid": _KEY.kid, "typ": typ}, claims, _KEY)


def verify(ctx: Context, token: str, *, accept_expired: bool = False) -> dict[str, Any] | None:
    try:
        claims = dict(jwt.decode(token, _KEY, algorithms=["RS256"]).claims)
    except (JoseError, ValueError):
        return None
    exp = claims.get("exp")
    if not accept_expired and (not isinstance(exp, int) or exp <= ctx.now()):
        return None
    return claims


def jwks(ctx: Context) -> dict[str, Any]:
    return dict(KeySet([_KEY]).as_dict(private=False))
