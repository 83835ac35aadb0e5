"""
The resource owner password credentials grant (RFC 6749 section 4.3), as
PhotoPrism has it: the user's own password, or one of the user's app
passwords, whose scope and lifetime then bound what is issued.
"""

from __future__ import annotations

from oauthd.protocol import errors, id_tokens, scopes, signing
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import issued, requested_scope
from oauthd.protocol.issuing import capped, derived_label, family_limit_records, mint
from oauthd.protocol.login import credentials, login
from oauthd.protocol.tokens import new_grant_id
from oauthd.state.decision import Decision
from oauthd.state.authz_records import GrantLogin
from oauthd.state.entities import REFRESH, Client


def _intersect(a: str, b: str) -> str:
    """
    The scope both C{a} and C{b} grant, canonical.
    """
    if scopes.ALL in scopes.names(a):
        return b
    if scopes.ALL in scopes.names(b):
        return a
    return " ".join(sorted(scopes.names(a) & scopes.names(b)))


async def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    username, password = credentials(params)
    requested_scope(ctx, params, client.scope, client.scope, client=client.id)
    logged_in = await login(ctx, username, password, ip, client=client.id)
    user, app = logged_in.user, logged_in.app
    # The client may have changed while the password was checked.
    current = ctx.state.clients.get(client.id)
    if current is None or not current.enabled:
        raise deny(errors.invalid_client("the client was disabled", False), ip=ip, client=client.id)
    client = current
    if "password" not in client.grant_types:
        raise deny(errors.unauthorized_client("the client may not use the password grant"),
                   ip=ip, client=client.id)
    scope = requested_scope(ctx, params, client.scope, client.scope, client=client.id)
    if app is not None:
        if params.get("scope", "").strip():
            if not scopes.within(scope, app.scope):
                raise deny(errors.invalid_scope("the scope exceeds the app password's"),
                           ip=ip, client=client.id, user=user.name, token=app.handle)
        else:
            scope = _intersect(scope, app.scope)
            if not scope:
                raise deny(errors.invalid_scope("the app password grants no scope this client may have"),
                           ip=ip, client=client.id, user=user.name, token=app.handle)
    grant = new_grant_id(ctx.random_bytes)
    label = derived_label(app) if app is not None else ""
    records = [*logged_in.records, *family_limit_records(ctx, client, user.name)]
    # A login at the token endpoint, by password (or an app password).
    signed_in = GrantLogin(grant, ctx.now(), ("pwd",), "", 0)
    access = id_tokens.access_token(ctx, client, scope=scope, lifetime=capped(ctx, client.access_ttl, app),
                                    user=user.name, grant=grant, label=label, login=signed_in)
    records += [access.record, *signing.pending(ctx)]
    refresh = None
    if "refresh_token" in client.grant_types:
        # A family lives no longer than refresh_family_lifetime: its first
        # refresh token neither.
        lifetime = min(capped(ctx, client.refresh_ttl, app), ctx.config.refresh_family_lifetime)
        refresh = mint(ctx, REFRESH, scope=scope, lifetime=lifetime,
                       client_id=client.id, user=user.name, grant=grant, label=label)
        records.append(refresh.record)
    return issued(records, client, "password", ip, access, refresh.secret if refresh else "")
