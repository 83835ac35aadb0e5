"""
ID tokens (OpenID Connect Core sections 2, 3.1.3.6 and 12.2) and JWT access
tokens (RFC 9068), signed by L{oauthd.protocol.signing}.

An ID token is issued by the authorization code grant when C{openid} was
granted, and by the refresh of such a grant with the login it came from
(L{GrantLogin}: the original C{auth_time}, C{amr} and C{sid}, no C{nonce}).
Its C{aud} is the client alone, so C{azp} (needed only beside other
audiences) is left out. C{sid} is the handle of the browser session the
user logged in with, which RP-initiated logout ends.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from oauthd.protocol import claims as user_claims
from oauthd.protocol import scopes, signing, subjects, tokens
from oauthd.protocol.context import Context
from oauthd.protocol.issuing import Minted, mint
from oauthd.state.authz_records import BrowserSession, GrantLogin
from oauthd.state.entities import ACCESS, Client, Token, User

CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "sid"})
"""
The claims of an ID token besides the user's (discovery's claims_supported).
"""

_HASHES = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "EdDSA": hashlib.sha512}
"""
The hash of each algorithm, for C{at_hash}: the one its signature uses
(SHA-512 for Ed25519, as relying parties compute it).
"""


def algorithm(ctx: Context, client: Client) -> str:
    return client.id_token_signed_response_alg or ctx.config.id_token_alg


def token_hash(value: str, alg: str) -> str:
    """
    C{at_hash}: the left half of the hash of C{value}, base64url without
    padding (OpenID Connect Core section 3.1.3.6).
    """
    digest = _HASHES[alg](value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:len(digest) // 2]).rstrip(b"=").decode("ascii")


def amr(methods: tuple[str, ...]) -> list[str]:
    """
    The C{amr} claim (RFC 8176) of a login by C{methods}: C{mfa} besides
    them when there were two factors.
    """
    return [*methods, "mfa"] if len(set(methods)) > 1 else list(methods)


def wants_id_token(scope: str) -> bool:
    """
    Whether a grant of C{scope} gets ID tokens: it names C{openid} (C{*},
    every scope, does not make a plain OAuth client an OpenID one).
    """
    return "openid" in scopes.names(scope)


def login_of(session: BrowserSession, grant: str, expires_at: int) -> GrantLogin:
    return GrantLogin(grant, session.auth_time, session.amr, session.handle, expires_at)


def id_token(
    ctx: Context, client: Client, user: User, login: GrantLogin, scope: str, access_token: str,
    nonce: str = "",
) -> str:
    """
    A signed ID token for C{user} at C{client}, issued with C{access_token}.
    """
    alg = algorithm(ctx, client)
    now = ctx.now()
    body: dict[str, Any] = {}
    if client.id_token_claims:
        body.update(user_claims.about(user, scope))
    body.update({
        "iss": ctx.config.issuer, "sub": subjects.of_user(user), "aud": client.id,
        "exp": now + ctx.config.id_token_ttl, "iat": now, "auth_time": login.auth_time,
        "at_hash": token_hash(access_token, alg), "amr": amr(login.amr), "sid": login.sid,
    })
    if nonce:
        body["nonce"] = nonce
    return signing.sign(ctx, body, alg)


def access_token(
    ctx: Context, client: Client, *, scope: str, lifetime: int, user: str = "", grant: str = "",
    label: str = "", login: GrantLogin | None = None,
) -> Minted:
    """
    A new access token for C{client}: PhotoPrism's opaque format, or for a
    client with C{jwt_access_tokens} (and a lifetime) a signed JWT (RFC
    9068). The state keeps a JWT by the digest of its C{jti}, as an opaque
    token by the digest of its secret, so it is revoked and introspected
    alike; a C{jti} is not in an opaque token's format, so it cannot be
    presented as one.
    """
    minted = mint(ctx, ACCESS, scope=scope, lifetime=lifetime, client_id=client.id, user=user,
                  grant=grant, label=label)
    if not (client.jwt_access_tokens and lifetime):
        return minted
    jti = ctx.random_bytes(16).hex()
    key, session_id = tokens.key_and_session_id(jti)
    token = minted.token
    held = Token(key, ACCESS, token.client_id, token.user, scope, token.issued_at, lifetime, grant, label)
    audience = list(client.audience) or [ctx.config.issuer]
    body: dict[str, Any] = {
        "iss": ctx.config.issuer, "exp": token.issued_at + lifetime,
        "aud": audience[0] if len(audience) == 1 else audience,
        "sub": subjects.of_token(ctx.state, held), "client_id": client.id, "iat": token.issued_at,
        "jti": jti, "scope": scope,
    }
    if login is not None:
        body["auth_time"] = login.auth_time
        body["amr"] = amr(login.amr)
    return Minted(signing.sign(ctx, body, algorithm(ctx, client), typ="at+jwt"), held, session_id)


def presented_jwt(ctx: Context, presented: str) -> int | None:
    """
    The state's key of a JWT access token presented as a bearer: its
    C{jti}'s, if one of our keys signed it and it has not expired.
    """
    if len(presented) > MAX_JWT or presented.count(".") != 2:
        return None
    found = signing.verify(ctx, presented)
    jti = found.get("jti") if found is not None else None
    if not isinstance(jti, str) or not jti:
        return None
    return tokens.token_key(jti)


MAX_JWT = 8192
"""
The longest JWT access token looked at.
"""
