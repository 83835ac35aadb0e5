"""
A person logging in, at the token endpoint (password grant) or for a
PhotoPrism session: with their own password, checked by bcrypt off the
reactor and guarded by rate limits before the check, or with one of their
app passwords, which cannot be guessed and is always checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from oauthd.interfaces import MAX_PASSWORD_BYTES, HasherBusy
from oauthd.protocol import errors, tokens
from oauthd.protocol.context import Context
from oauthd.protocol.errors import deny
from oauthd.protocol.limits import LOGIN_IP, USERNAME, guard, ip_key, refuse
from oauthd.protocol.lookup import authenticate_token
from oauthd.protocol.rules import valid_username
from oauthd.state.entities import APP_PASSWORD, Token, User

WRONG_LOGIN = "the username or password is wrong"


def credentials(params: Mapping[str, str]) -> tuple[str, str]:
    """
    The username (trimmed, lower-case) and password a request gives.

    @raise OAuthError: C{invalid_request} if either is missing, or the
        password is longer than bcrypt reads.
    """
    username = params.get("username", "")
    password = params.get("password", "")
    if not username:
        raise errors.invalid_request("username is required")
    if not password:
        raise errors.invalid_request("password is required")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise errors.invalid_request(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes")
    return username.strip().lower(), password


async def check_password(ctx: Context, name: str, password: str) -> User | None:
    """
    The enabled user C{name} if C{password} is that user's own password.
    Unknown users cost as much time as known ones.
    """
    user = ctx.state.users.get(name)
    hashed = user.password_hash if user is not None else ""
    matches = await ctx.hasher.check(password, hashed)
    # The user may have been disabled, deleted or given a new password while
    # bcrypt ran: only the user as it is now counts.
    current = ctx.state.users.get(name)
    if not matches or current is None or current.disabled or current.password_hash != hashed:
        return None
    return current


async def login(
    ctx: Context, name: str, password: str, ip: str, browser: bool = False, **context: object,
) -> tuple[User, Token | None]:
    """
    The user C{name} if C{password} is the user's own password or one of the
    user's app passwords, and that app password.

    The audit names the user only if one by that name exists: a name that
    matches no one may be a password typed into the wrong field.

    @param browser: a browser login (L{oauthd.protocol.browser}): only the
        user's own password counts, and a user with a second factor is let
        through for the caller to ask for it.
    """
    known = name if name in ctx.state.users else ""
    charges = [(LOGIN_IP, ip_key(ip)), (USERNAME, name[:64])]
    if tokens.is_app_password(password) and not browser:
        # Unguessable: always checked, never blocked when right.
        app = authenticate_token(ctx, password)
        user = ctx.state.users.get(name)
        if (app is not None and app.kind == APP_PASSWORD and app.user == name
                and user is not None and not user.disabled):
            return user, app
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     user=known, reason="wrong app password", **context)
    guard(ctx.limiter, charges, ip, user=known, **context)
    if not valid_username(name):
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     reason="malformed username", **context)
    try:
        checked = await check_password(ctx, name, password)
    except HasherBusy:
        raise deny(errors.temporarily_unavailable("too many logins at once; try again"),
                   ip=ip, user=known, **context) from None
    if checked is None:
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     user=known, reason="wrong password or unknown user", **context)
    if ctx.second_factor(checked) and not browser:
        raise deny(errors.invalid_grant(
            "this account uses two-factor authentication: log in with an app password"),
            ip=ip, user=name, **context)
    return checked, None
