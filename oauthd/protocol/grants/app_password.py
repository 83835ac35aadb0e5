"""
PhotoPrism's "Apps and Devices": a user signed in to the web UI mints an app
password at the token endpoint, with C{grant_type=password} (or C{session}),
no client credentials, the login session in C{X-Auth-Token}, and the user's
own password typed again.

This is not RFC 6749's password grant: it is taken only when no client
identifies itself at all, so it changes nothing for OAuth clients. A request
that is malformed is a 400 C{invalid_request} (or C{invalid_scope}) before any
password is checked; every refusal of the credentials (the session, the
username, the password) is a 401, as PhotoPrism's tests expect.
"""

from __future__ import annotations

from oauthd.protocol import errors
from oauthd.protocol.admin.tokens import issue_by_hand
from oauthd.protocol.bearer import bearer
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import AdminError, OAuthError, deny
from oauthd.protocol.grants.answer import requested_scope
from oauthd.protocol.issuing import from_app_password, from_app_password_label
from oauthd.protocol.rules import MAX_LIFETIME, check_label
from oauthd.protocol.login import credentials, login
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import SESSION, Token

GRANT_TYPES = frozenset({"password", "session"})
"""
The grant types PhotoPrism's web UI sends: C{session} for users without a
password of their own, which oauthd does not have, so it asks for the
password like C{password}.
"""


def _refused(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description, 401,
                      {"WWW-Authenticate": errors.bearer_challenge(errors.REALM)})


def _login_session(ctx: Context, presented: str, ip: str) -> Token:
    """
    The user's own login session presented: one from the user's password,
    not from an app password (an app cannot mint more apps).
    """
    session = bearer(ctx, presented, ip)
    if session.kind != SESSION or not session.user or from_app_password(session):
        raise deny(_refused("app passwords are created from a login session with your password"),
                   ip=ip, token=session.handle)
    return session


def _lifetime(params: Params) -> int:
    """
    C{expires_in} as PhotoPrism reads it: seconds, with 0 (or none) for an
    app password that never expires.
    """
    value = params.get("expires_in", "0")
    if not value.isascii() or not value.isdigit() or int(value) > MAX_LIFETIME:
        raise errors.invalid_request(f"expires_in must be a whole number of seconds up to {MAX_LIFETIME}")
    return int(value)


def _name(params: Params) -> str:
    try:
        name = check_label("client_name", params.get("client_name", ""))
    except AdminError as e:
        raise errors.invalid_request(str(e)) from None
    if from_app_password_label(name):
        raise errors.invalid_request("client_name must not start with 'from '")
    return name


async def decide(ctx: Context, params: Params, presented: str, ip: str) -> Decision[Body]:
    """
    Mint an app password for the user of the login session presented, once
    the password given is that user's own.
    """
    session = _login_session(ctx, presented, ip)
    name = _name(params)
    if not params.get("scope", "").strip():
        raise errors.invalid_request("scope is required")
    scope = requested_scope(ctx, params, session.scope, session.scope, ip=ip, user=session.user)
    lifetime = _lifetime(params)
    username, password = credentials(params)
    if username != session.user:
        raise deny(_refused("the username is not the signed-in user's"),
                   ip=ip, user=session.user, token=session.handle)
    try:
        logged_in = await login(ctx, session.user, password, ip)
    except OAuthError as e:
        if e.error != "invalid_grant":
            raise
        raise deny(_refused(e.description), **e.context) from None
    user, app = logged_in.user, logged_in.app
    if app is not None:
        raise deny(_refused("confirm with your own password, not an app password"),
                   ip=ip, user=user.name, token=app.handle)
    if ctx.state.token(session.key, ctx.now()) is None:
        raise deny(_refused("the login session ended"), ip=ip, user=user.name)
    try:
        minted = issue_by_hand(ctx, label=name, scope=scope, lifetime=lifetime, user_name=user.name)
    except AdminError as e:
        raise deny(errors.invalid_request(str(e)), ip=ip, user=user.name) from None
    token = minted.answer.token
    context: dict[str, object] = {"user": user.name, "token": token.handle}
    issued = audit("token.issue", "ok", kind=token.kind, scope=token.scope, ip=ip,
                   via=session.handle, **context)
    body: Body = {
        "status": "success",
        "session_id": minted.answer.session_id,
        "access_token": minted.answer.secret,
        "token_type": "Bearer",
        "expires_in": token.lifetime,
        "client_name": token.label,
        "client_role": "client",
        "scope": token.scope,
    }
    return Decision(body, [*logged_in.records, *minted.records], (issued,), context=context)
