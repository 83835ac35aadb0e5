"""
Registering, changing and removing clients.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs

from oauthd.protocol import scopes, tokens
from oauthd.protocol.context import Context
from oauthd.protocol.errors import Conflict, InvalidValue, NotFound
from oauthd.protocol.rules import (
    CLIENT_ROLES,
    GRANT_TYPES,
    check_label,
    check_lifetime,
    check_redirect_uri_count,
    check_redirect_uris,
)
from oauthd.protocol.signing import ALGORITHMS
from oauthd.state.decision import Decision
from oauthd.state.entities import CONFIDENTIAL, PUBLIC, Client
from oauthd.state.follower import new_client_claim
from oauthd.state.records import ClientPut, ClientRemoved


def client(ctx: Context, client_id: str) -> Client:
    try:
        return ctx.state.clients[client_id]
    except KeyError:
        raise NotFound(f"no such client: {client_id[:40]}") from None


def checked(ctx: Context, candidate: Client) -> Client:
    """
    C{candidate} if it obeys the rules, with its scope in canonical form.

    @raise AdminError: naming the first rule it breaks.
    """
    check_label("client name", candidate.name)
    if candidate.type not in (CONFIDENTIAL, PUBLIC):
        raise InvalidValue("client type is confidential or public")
    unknown = set(candidate.grant_types) - GRANT_TYPES
    if unknown:
        raise InvalidValue(f"unknown grant type {sorted(unknown)[0][:60]!r}")
    if candidate.public and "client_credentials" in candidate.grant_types:
        raise InvalidValue("a public client cannot use client_credentials")
    if candidate.pkce not in ("required", "optional"):
        raise InvalidValue("pkce is required or optional")
    if candidate.public and candidate.pkce != "required":
        raise InvalidValue("a public client always needs PKCE")
    if candidate.public and candidate.introspect:
        raise InvalidValue("a public client cannot be a resource server (it cannot authenticate)")
    if candidate.role not in CLIENT_ROLES:
        raise InvalidValue("client role is client or admin")
    if candidate.user and candidate.user not in ctx.state.users:
        raise NotFound(f"no such user: {candidate.user[:64]}")
    if candidate.max_tokens == 0 or candidate.max_tokens < -1:
        raise InvalidValue("the token limit is a positive number, or -1 for none")
    check_lifetime("access token lifetime", candidate.access_ttl)
    check_lifetime("refresh token lifetime", candidate.refresh_ttl)
    check_redirect_uris(candidate.redirect_uris)
    check_redirect_uris(candidate.post_logout_redirect_uris, "post-logout redirect URI")
    _check_openid(candidate)
    try:
        scope = ctx.scope(candidate.scope)
    except scopes.ScopeError as e:
        raise InvalidValue(str(e)) from None
    return attrs.evolve(candidate, scope=scope)


MAX_AUDIENCES = 10


def _check_openid(candidate: Client) -> None:
    if candidate.id_token_signed_response_alg not in ("", *ALGORITHMS):
        raise InvalidValue(f"the ID token algorithm is one of {', '.join(ALGORITHMS)}")
    if len(candidate.audience) > MAX_AUDIENCES:
        raise InvalidValue(f"a client has at most {MAX_AUDIENCES} audiences")
    for uri in candidate.audience:
        parts = urlsplit(uri)
        if (not parts.scheme or not parts.netloc or len(uri) > 2000
                or any(c.isspace() or not c.isprintable() for c in uri)):
            raise InvalidValue("an audience is an absolute URI")


def _with_new_secret(ctx: Context, candidate: Client) -> tuple[Client, str]:
    secret = tokens.new_client_secret(ctx.random_bytes)
    return attrs.evolve(candidate, secret_digest=tokens.secret_digest(secret)), secret


def add_client(ctx: Context, name: str, **fields: Any) -> Decision[tuple[Client, str]]:
    """
    Register a client; the answer is it and its secret (C{""} for a public
    client), which is shown once and stored only as a digest.
    """
    check_redirect_uri_count(fields.get("redirect_uris", ()))
    check_redirect_uri_count(fields.get("post_logout_redirect_uris", ()))
    now = ctx.now()
    new = checked(ctx, Client(
        id=tokens.new_client_id(now, ctx.random_bytes), name=name, created_at=now, **fields,
    ))
    secret = ""
    if not new.public:
        new, secret = _with_new_secret(ctx, new)
    return Decision((new, secret), [ClientPut(new)], claims=[new_client_claim(new.id)],
                    lost=lambda: Decision((new, secret), refusal=Conflict(f"client {new.id} already exists")))


def update_client(
    ctx: Context, client_id: str, regenerate_secret: bool = False, **changes: Any,
) -> Decision[tuple[Client, str]]:
    """
    Change a client; disabling it revokes its tokens. The answer is the
    client and its new secret if one was generated, else C{""}.
    """
    check_redirect_uri_count(changes.get("redirect_uris", ()))
    check_redirect_uri_count(changes.get("post_logout_redirect_uris", ()))
    changed = checked(ctx, attrs.evolve(client(ctx, client_id), **changes))
    secret = ""
    if changed.public:
        changed = attrs.evolve(changed, secret_digest="")
    elif regenerate_secret or not changed.secret_digest:
        changed, secret = _with_new_secret(ctx, changed)
    return Decision((changed, secret), [ClientPut(changed)])


def remove_client(ctx: Context, client_id: str) -> Decision[Client]:
    """
    Delete a client and revoke all its tokens.
    """
    return Decision(client(ctx, client_id), [ClientRemoved(client_id)])
