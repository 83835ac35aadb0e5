"""
The refresh token grant (RFC 6749 section 6) with rotation: each refresh
token is used once and replaced; one that comes back after its use means the
grant is compromised, and the whole family is revoked (RFC 9700 section
4.14.2).
"""

from __future__ import annotations

from oauthd.protocol import errors, scopes, tokens
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import issued, requested_scope
from oauthd.protocol.issuing import app_password_of, capped, mint, oldest_beyond
from oauthd.protocol.limits import TOKEN_IP, ip_key, refuse
from oauthd.protocol.lookup import authenticate_token
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import ACCESS, REFRESH, USED_REFRESH, Client, Token
from oauthd.state.records import GrantRevoked, Record, RefreshUsed


def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    presented = params.get("refresh_token", "")
    if not presented:
        raise errors.invalid_request("refresh_token is required")
    token = authenticate_token(ctx, presented) if tokens.is_access_token(presented) else None
    if token is None or token.kind not in (REFRESH, USED_REFRESH):
        raise refuse(ctx.limiter, errors.invalid_grant("the refresh token is invalid, expired or revoked"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id)
    if token.client_id != client.id:
        raise refuse(ctx.limiter, errors.invalid_grant("the refresh token was issued to another client"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id, token=token.handle)
    if token.kind == USED_REFRESH:
        return _reused(token, client, ip)
    scope = requested_scope(ctx, params, token.scope, token.scope, client=client.id, user=token.user)
    if not scopes.within(scope, client.scope):
        raise deny(errors.invalid_scope("the client may no longer be granted this scope"),
                   client=client.id, user=token.user, scope=scope)
    app = None
    if token.label:
        app = app_password_of(ctx, token)
        if app is None:
            raise deny(errors.invalid_grant("the app password this grant came from is revoked"),
                       client=client.id, user=token.user, token=token.handle)
    records: list[Record] = [RefreshUsed(token.key)]
    if client.max_tokens >= 0:
        live = [t for t in ctx.state.grant_tokens(token.grant, ctx.now()) if t.kind == ACCESS]
        records += oldest_beyond(live, client.max_tokens)
    access = mint(ctx, ACCESS, scope=scope, lifetime=capped(ctx, client.access_ttl, app),
                  client_id=client.id, user=token.user, grant=token.grant, label=token.label)
    # The new refresh token keeps the grant's scope (RFC 6749 section 6): a
    # narrower access token now does not narrow later ones.
    refresh = mint(ctx, REFRESH, scope=token.scope, lifetime=capped(ctx, client.refresh_ttl, app),
                   client_id=client.id, user=token.user, grant=token.grant, label=token.label)
    records += [access.record, refresh.record]
    return issued(records, client, "refresh_token", ip, access, refresh)


def _reused(token: Token, client: Client, ip: str) -> Decision[Body]:
    """
    A used refresh token came back: whoever holds it, the grant is
    compromised, so every token of the family is revoked before the refusal
    is sent.
    """
    context: dict[str, object] = {"client": client.id, "user": token.user, "token": token.handle}
    error = deny(
        errors.invalid_grant("the refresh token was already used; the grant is revoked"),
        ip=ip, reason="refresh token reuse", **context,
    )
    revoked = audit("token.revoke", "ok", ip=ip, grant=token.grant, reason="refresh token reuse",
                    **context)
    return Decision({}, [GrantRevoked(token.grant)], (revoked,), refusal=error,
                    context={"grant": token.grant, **context})
