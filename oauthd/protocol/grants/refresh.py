"""
The refresh token grant (RFC 6749 section 6) with rotation: each refresh
token is used once and replaced; one that comes back after its use means the
grant is compromised, and the whole family is revoked (RFC 9700 section
4.14.2). A family lives at most C{refresh_family_lifetime} from its login,
and no refresh token it issues outlives it.
"""

from __future__ import annotations

from oauthd.protocol import errors, id_tokens, scopes, signing, tokens
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import issued, requested_scope
from oauthd.protocol.issuing import app_password_of, beside, capped, pair
from oauthd.protocol.limits import TOKEN_IP, ip_key, refuse
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import REFRESH, Client, handle
from oauthd.state.records import GrantRevoked, Record, RefreshUsed, TokenIssued, TokenRevoked
from oauthd.state.rotation_records import TokenRotated


def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    presented = params.get("refresh_token", "")
    if not presented:
        raise errors.invalid_request("refresh_token is required")
    now = ctx.now()
    state = ctx.state
    key = tokens.token_key(presented) if tokens.is_access_token(presented) else None
    token = state.token(key, now) if key is not None else None
    if token is None and key is not None:
        used = state.used_family(key)
        if used is not None:
            _check_owner(ctx, client, ip, used.client_id, handle(key))
            return _reused(used.grant, used.user, handle(key), client, ip)
    if token is None or token.kind != REFRESH:
        raise refuse(ctx.limiter, errors.invalid_grant("the refresh token is invalid, expired or revoked"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id)
    if token.client_id != client.id:
        _check_owner(ctx, client, ip, token.client_id, token.handle)
    family = state.families.get(token.grant)
    ends = (family.started if family is not None else token.issued_at) + ctx.config.refresh_family_lifetime
    if now >= ends:
        raise deny(errors.invalid_grant("the grant has reached its maximum lifetime; log in again"),
                   ip=ip, client=client.id, user=token.user, token=token.handle)
    # (Asked for rarely: the grant's scope, without a call, if not.)
    scope = token.scope
    if params.get("scope", "").strip():
        scope = requested_scope(ctx, params, token.scope, token.scope, client=client.id, user=token.user)
    if scope != client.scope and not scopes.within(scope, client.scope):
        raise deny(errors.invalid_scope("the client may no longer be granted this scope"),
                   client=client.id, user=token.user, scope=scope)
    app = None
    if token.label:
        app = app_password_of(ctx, token)
        if app is None:
            raise deny(errors.invalid_grant("the app password this grant came from is revoked"),
                       client=client.id, user=token.user, token=token.handle)
    revoked: tuple[int, ...] = ()
    if client.max_tokens >= 0:
        revoked = tuple([t.key for t in state.access_beyond(token.grant, client.max_tokens, now)])
    login = state.authz.logins.get(token.grant)
    lifetimes = (client.access_ttl, client.refresh_ttl) if app is None else (
        capped(ctx, client.access_ttl, app), capped(ctx, client.refresh_ttl, app))
    # The new refresh token keeps the grant's scope (RFC 6749 section 6): a
    # narrower access token now does not narrow later ones.
    lifetimes = lifetimes[0], min(lifetimes[1], ends - now)
    if client.jwt_access_tokens and lifetimes[0]:
        access = id_tokens.access_token(ctx, client, scope=scope, lifetime=lifetimes[0], user=token.user,
                                        grant=token.grant, label=token.label, login=login)
        refresh, refresh_token = beside(ctx, access.token, REFRESH, token.scope, lifetimes[1])
    else:
        access, refresh, refresh_token = pair(ctx, client.id, token, scope, lifetimes, now)
    records: list[Record]
    if token.grant:
        records = [TokenRotated(token.key, revoked, access.token, refresh_token)]
    else:
        # (None is issued so now, but a journal may hold one: as its parts.)
        records = [RefreshUsed(token.key), *map(TokenRevoked, revoked), access.record, TokenIssued(refresh_token)]
    id_token = ""
    if login is not None and id_tokens.wants_id_token(scope):
        user = state.users.get(token.user)
        if user is not None:
            # OpenID Connect Core section 12.2: the original login's auth_time.
            id_token = id_tokens.id_token(ctx, client, user, login, scope, access.secret)
    records += signing.pending(ctx)
    # Another node rotated it first (the shared log's claim on the grant no
    # longer holds this token): a reuse, as if it had come here second.
    return issued(records, client, "refresh_token", ip, access, refresh, id_token,
                  lost=lambda: _reused(token.grant, token.user, token.handle, client, ip))


def _check_owner(ctx: Context, client: Client, ip: str, owner: str, name: str) -> None:
    """
    Refuse a refresh token (its handle: C{name}) of another client: not a
    reuse, the owner may still refresh with it.
    """
    if owner != client.id:
        raise refuse(ctx.limiter, errors.invalid_grant("the refresh token was issued to another client"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id, token=name)


def _reused(grant: str, user: str, name: str, client: Client, ip: str) -> Decision[Body]:
    """
    A used refresh token (its handle: C{name}) of C{grant} came back:
    whoever holds it, the grant is compromised, so every token of the family
    is revoked before the refusal is sent.
    """
    context: dict[str, object] = {"client": client.id, "user": user, "token": name}
    error = deny(
        errors.invalid_grant("the refresh token was already used; the grant is revoked"),
        ip=ip, reason="refresh token reuse", **context,
    )
    revoked = audit("token.revoke", "ok", ip=ip, grant=grant, reason="refresh token reuse",
                    **context)
    return Decision({}, [GrantRevoked(grant)], (revoked,), refusal=error,
                    context={"grant": grant, **context})
