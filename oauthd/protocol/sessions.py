"""
PhotoPrism's login sessions: C{POST /api/v1/session} logs in with a password
or an app password for a short-lived session token, C{DELETE} ends it.

A failed login is a 401 here, as PhotoPrism's tests expect, whatever the
reason: a missing or wrong password and an unknown user read the same.
"""

from __future__ import annotations

from oauthd.protocol import errors, scopes, tokens
from oauthd.protocol.bearer import bearer
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import OAuthError, deny
from oauthd.protocol.issuing import capped, derived_label, mint
from oauthd.protocol.login import credentials, login
from oauthd.protocol.revocation import revoking
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import SESSION
from oauthd.state.records import oldest_beyond

MAX_SESSIONS = 20
"""
The most live login sessions per user; logging in once more ends the oldest.
"""


SESSIONS = "sessions"
"""
The scope an app password needs to open a session, and a token to end its
own at C{DELETE /api/v1/session} (PhotoPrism's C{sessions} resource).
"""


def _unauthorized(description: str, context: dict[str, object]) -> OAuthError:
    refused = OAuthError("invalid_grant", description, 401,
                         {"WWW-Authenticate": errors.bearer_challenge(errors.REALM)})
    return deny(refused, **context)


async def create_session(ctx: Context, params: Params, ip: str) -> Decision[Body]:
    """
    Log in with a username and password or app password and get a
    short-lived session token. A session from an app password has its scope
    and ends no later; one from the password has full scope. An app password
    opens one only if its scope allows C{sessions}.
    """
    try:
        username, password = credentials(params)
        logged_in = await login(ctx, username, password, ip)
    except OAuthError as e:
        if e.error not in ("invalid_request", "invalid_grant"):
            raise
        raise _unauthorized(e.description, {"ip": ip, **e.context}) from None
    user, app = logged_in.user, logged_in.app
    if app is not None and not scopes.within(SESSIONS, app.scope):
        raise _unauthorized("this app password's scope does not allow sessions",
                            {"ip": ip, "user": user.name, "token": app.handle})
    scope = app.scope if app is not None else scopes.ALL
    live = [t for t in ctx.state.user_tokens(user.name, ctx.now()) if t.kind == SESSION]
    records = [*logged_in.records, *oldest_beyond(live, MAX_SESSIONS)]
    lifetime = capped(ctx, ctx.config.session_ttl, app)
    session = mint(ctx, SESSION, scope=scope, lifetime=lifetime, user=user.name,
                   label=derived_label(app) if app is not None else "")
    records.append(session.record)
    context: dict[str, object] = {"user": user.name, "token": session.token.handle}
    created = audit("session.create", "ok", ip=ip, via=app.handle if app is not None else "password",
                    **context)
    body: Body = {
        "status": "success",
        "id": session.secret,
        "session_id": session.session_id,
        "access_token": session.secret,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
        "provider": "application" if app is not None else "local",
        "user": {
            "Name": user.name, "DisplayName": user.full_name, "Email": user.email,
            "Role": user.role,
        },
    }
    return Decision(body, records, (created,), context=context)


def delete_session(ctx: Context, presented: str | None, ip: str, reference: str | None = None) -> Decision[Body]:
    """
    Log out: end the session presented; C{reference}, if given, must name
    that same session (its session id or handle). As in PhotoPrism, an app
    password or access token may end itself here too if its scope allows
    C{sessions}.
    """
    token = bearer(ctx, presented, ip)
    assert presented is not None
    if token.kind != SESSION and not scopes.within(SESSIONS, token.scope):
        raise deny(errors.insufficient_scope(SESSIONS), ip=ip, token=token.handle, user=token.user)
    session_id = tokens.session_id(presented)
    if reference is not None and reference not in (session_id, token.handle):
        raise deny(OAuthError("access_denied", "only your own session can be ended here", 403),
                   ip=ip, token=token.handle, user=token.user)
    return revoking(ctx, token, ip, "self", {"status": "deleted", "session_id": session_id})
