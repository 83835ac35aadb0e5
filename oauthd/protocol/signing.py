"""
Signed JWTs (ID tokens, JWT access tokens) with the server's keys
(L{oauthd.state.keys}), by C{joserfc}. No I/O; the clock is C{ctx.now()}.

    token = signing.sign(ctx, claims, alg="ES256")          # needs claims["exp"]
    claims = signing.verify(ctx, token)                      # None if not ours or expired
    decision = Decision(answer, records=[..., *signing.pending(ctx)])

Signing a token that expires later than anything its key signed before
moves the key's mark in memory (L{oauthd.state.keys.Keys.reserve}); the
mark decides when the key, once retired, leaves the JWKS. L{pending} gives
the records that make the marks durable: a decision that signs puts them
among its records, and the daemon commits any left every minute.

Signing and verifying run on the reactor: an RSA-2048 signature holds it
for less than a millisecond, ES256 and EdDSA much less (C{bench/signing.py}
measures each), and only logins and refreshes sign; a thread would add a
hand-off to every one of them to spare other requests that wait. Making a
key, RSA's above all, costs more, but happens only at first start and at a
rotation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from oauthd.config import Config
from oauthd.protocol import errors
from oauthd.protocol.context import Context
from oauthd.state.keys import KeySignedUntil, SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")
"""
The algorithms the server signs with: RS256, which OpenID Connect requires,
first.
"""



@contextmanager
def _eddsa_named() -> Iterator[None]:
    """
    RFC 9864 deprecates the name C{EdDSA} for C{Ed25519}, and joserfc warns
    at each use; but OpenID Connect's relying parties know only C{EdDSA}
    (with Ed25519 keys) so far.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
        yield

Jwk = RSAKey | ECKey | OKPKey


class UnknownAlgorithm(ValueError):
    """
    No key signs with the algorithm asked for.
    """


def generate(alg: str, now: int, signs_from: int) -> SigningKey:
    """
    A new key for C{alg}, named by its RFC 7638 thumbprint.

    @raise UnknownAlgorithm: if C{alg} is not one of L{ALGORITHMS}.
    """
    made: Jwk
    if alg == "RS256":
        made = RSAKey.generate_key(2048)
    elif alg == "ES256":
        made = ECKey.generate_key("P-256")
    elif alg == "EdDSA":
        made = OKPKey.generate_key("Ed25519")
    else:
        raise UnknownAlgorithm(alg)
    return SigningKey(made.thumbprint(), alg, now, signs_from, dict(made.as_dict(private=True)))


def _imported(ctx: Context, key: SigningKey) -> Jwk:
    cache = ctx.state.keys.cache
    held = cache.get(key.kid)
    if held is None:
        held = cache[key.kid] = _import(key.jwk)
    assert isinstance(held, RSAKey | ECKey | OKPKey)
    return held


def _import(fields: dict[str, Any]) -> Jwk:
    kty = fields.get("kty")
    if kty == "RSA":
        return RSAKey.import_key(fields)
    if kty == "EC":
        return ECKey.import_key(fields)
    return OKPKey.import_key(fields)


def sign(ctx: Context, claims: dict[str, Any], alg: str = "RS256", typ: str = "JWT") -> str:
    """
    C{claims} as a compact JWS, header C{{alg, kid, typ}}, signed by the key
    of C{alg} in state I{signing}.

    @param claims: must hold C{exp}, a whole number of seconds.
    @raise UnknownAlgorithm: if C{alg} is not one of L{ALGORITHMS}.
    @raise OAuthError: C{temporarily_unavailable} if no key of C{alg} signs
        yet.
    """
    now = ctx.now()
    key = ctx.state.keys.signing(alg, now)
    if key is None:
        if alg not in ALGORITHMS:
            raise UnknownAlgorithm(alg)
        # None of alg's keys signs yet (the first keys are not made, or the
        # clock stepped back past their start): a moment later one will.
        raise errors.temporarily_unavailable(f"no {alg} key signs yet; try again")
    expires_at = claims["exp"]
    if type(expires_at) is not int:
        raise ValueError("exp must be a whole number of seconds")
    with _eddsa_named():
        token = jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, _imported(ctx, key),
                           algorithms=[alg])
    ctx.state.keys.reserve(key.kid, expires_at)
    return token


def verify(ctx: Context, token: str, *, accept_expired: bool = False) -> dict[str, Any] | None:
    """
    The claims of C{token} if one of the published keys (next, signing or
    retired) signed it with that key's algorithm and, unless
    C{accept_expired}, its C{exp} has not passed; else C{None}.
    """
    now = ctx.now()
    published = {key.kid: key for key in ctx.state.keys.published(now)}
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
        key = published.get(header.get("kid", ""))
        if key is None or header.get("alg") != key.alg:
            return None
        with _eddsa_named():
            decoded = jwt.decode(token, _imported(ctx, key), algorithms=[key.alg])
        claims = dict(decoded.claims)
        if "exp" not in claims:
            return None
        checked = {name: value for name, value in claims.items()
                   if not (accept_expired and name == "exp")}
        JWTClaimsRegistry(now=now).validate(checked)
    except (JoseError, ValueError, TypeError, KeyError, UnicodeError):
        return None
    return claims


def jwks(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """
    The JWKS: the public part of every published key, with C{kid}, C{use}
    and C{alg}.
    """
    keys = []
    for key in ctx.state.keys.published(ctx.now()):
        public = dict(_imported(ctx, key).as_dict(private=False))
        keys.append({**public, "kid": key.kid, "use": "sig", "alg": key.alg})
    return {"keys": keys}


JWKS_MAX_AGE = 900
"""
The most seconds relying parties may cache the JWKS for.
"""


def jwks_max_age(config: Config) -> int:
    """
    How long relying parties may cache the JWKS: well inside the publish
    delay, so that a cached copy holds a new key before it signs.
    """
    return min(JWKS_MAX_AGE, config.key_publish_delay // 2)


def algorithms(ctx: Context) -> tuple[str, ...]:
    """
    The algorithms that can sign now, RS256 first (for discovery).
    """
    now = ctx.now()
    return tuple(alg for alg in ALGORITHMS if ctx.state.keys.signing(alg, now) is not None)


def pending(ctx: Context) -> list[KeySignedUntil]:
    """
    The records that make the signing marks reserved in memory durable.
    """
    return ctx.state.keys.pending()
