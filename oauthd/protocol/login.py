"""
A person logging in, at the token endpoint (password grant) or for a
PhotoPrism session: with their own password, checked by bcrypt off the
reactor and guarded by rate limits before the check, or with one of their
app passwords, which cannot be guessed and is always checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from attrs import frozen

from twisted.internet.task import deferLater

from oauthd.interfaces import MAX_PASSWORD_BYTES, WORST_RANK, HasherBusy
from oauthd.protocol import errors, tokens
from oauthd.protocol.context import Context
from oauthd.protocol.errors import deny
from oauthd.protocol.limits import (
    LOGIN_IP,
    USERNAME,
    USERNAME_IP,
    USERNAME_NEW,
    RateLimiter,
    Rule,
    guard,
    ip_key,
    refuse,
)
from oauthd.protocol.lookup import authenticate_token
from oauthd.protocol.rules import valid_username
from oauthd.state.entities import APP_PASSWORD, Token, User
from oauthd.state.records import Record, UserPut

WRONG_LOGIN = "the username or password is wrong"


@frozen
class Login:
    """
    Who logged in.

    @ivar app: the app password they logged in with, if any.
    @ivar records: what to commit with the login: the password hashed again
        at the configured cost, if it was hashed at another.
    """

    user: User
    app: Token | None = None
    records: Sequence[Record] = ()


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


async def check_password(
    ctx: Context, name: str, password: str, keys: Sequence[str] = (), rank: int = 0,
) -> User | None:
    """
    The enabled user C{name} if C{password} is that user's own password.
    Unknown users cost as much time as known ones.

    The user may be disabled, removed or given a new password while bcrypt
    runs: only the user as it is then counts. A hash that changed meanwhile
    may also be the same password hashed again at a new cost by a concurrent
    login (L{_rehashed}), so the password is checked once more against it
    rather than refused.
    """
    user = ctx.state.users.get(name)
    hashed = user.password_hash if user is not None else ""
    for _ in range(2):
        if not await ctx.hasher.check(password, hashed, keys, rank):
            return None
        current = ctx.state.users.get(name)
        if current is None or current.disabled:
            return None
        if current.password_hash == hashed:
            return current
        hashed = current.password_hash
    return None


def standing(limiter: RateLimiter, source: str, pair: str) -> tuple[int, Rule | None]:
    """
    The rank of a password check from C{source} for a username (C{pair} is
    both), and the pace it keeps: none for an address the user logged in
    from lately; the new addresses' pace for one that has not failed lately;
    the common pace for the rest.
    """
    if limiter.knows(pair):
        return 0, None
    if limiter.untouched(LOGIN_IP, source) and limiter.untouched(USERNAME_IP, pair):
        return 1, USERNAME_NEW
    return WORST_RANK, USERNAME


async def login(
    ctx: Context, name: str, password: str, ip: str, browser: bool = False, **context: object,
) -> Login:
    """
    The user C{name} if C{password} is the user's own password or one of the
    user's app passwords, and that app password.

    An address that has failed too often is refused before any check (for
    all usernames, and for this one); otherwise the check keeps the
    username's pace (L{standing}): it may wait for its turn, up to
    the limiter's C{max_pace_wait}, or be refused if that is further off.

    The audit names the user only if one by that name exists: a name that
    matches no one may be a password typed into the wrong field.

    @param browser: a browser login (L{oauthd.protocol.browser}): only the
        user's own password counts, and a user with a second factor is let
        through for the caller to ask for it.
    """
    known = name if name in ctx.state.users else ""
    source = ip_key(ip)
    pace_key = name[:64]
    pair = f"{pace_key} {source}"
    charges = [(LOGIN_IP, source), (USERNAME_IP, pair)]
    if tokens.is_app_password(password) and not browser:
        # Unguessable: always checked, never blocked when right.
        app = authenticate_token(ctx, password)
        user = ctx.state.users.get(name)
        if (app is not None and app.kind == APP_PASSWORD and app.user == name
                and user is not None and not user.disabled):
            return Login(user, app)
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     user=known, reason="wrong app password", **context)
    guard(ctx.limiter, charges, ip, user=known, **context)
    if not valid_username(name):
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     reason="malformed username", **context)
    rank, pace = standing(ctx.limiter, source, pair)
    if pace is not None:
        wait = ctx.limiter.reserve(pace, pace_key, ctx.limiter.max_pace_wait)
        if wait is None:
            # Counted against this address for this username, so that its
            # next try waits with the addresses that failed, not with the
            # new ones (or one address could use up the new ones' pace).
            limited = errors.too_many_requests(ctx.limiter.retry_after(pace, pace_key))
            raise refuse(ctx.limiter, limited, ip, [(USERNAME_IP, pair)], user=known,
                         limit=pace.name, **context)
        if wait:
            await deferLater(ctx.clock, wait)
    try:
        checked = await check_password(ctx, name, password, (source, pace_key), rank)
    except HasherBusy:
        if pace is not None:
            ctx.limiter.refund(pace, pace_key)
        # Counted against the address (not the username): one that keeps
        # coming back to a full queue is ranked after those that do not.
        raise refuse(ctx.limiter, errors.temporarily_unavailable("too many logins at once; try again"),
                     ip, [(LOGIN_IP, source)], user=known, **context) from None
    if checked is None:
        ctx.limiter.forget(pair)
        raise refuse(ctx.limiter, errors.invalid_grant(WRONG_LOGIN), ip, charges,
                     user=known, reason="wrong password or unknown user", **context)
    if pace is not None:
        ctx.limiter.refund(pace, pace_key)
    if ctx.second_factor(checked) and not browser:
        raise deny(errors.invalid_grant(
            "this account uses two-factor authentication: log in with an app password"),
            ip=ip, user=name, **context)
    ctx.limiter.remember(pair)
    return await _rehashed(ctx, checked, password, ip=ip, **context)


async def _rehashed(ctx: Context, user: User, password: str, **context: object) -> Login:
    """
    The login of C{user}, with the password hashed again if its hash was
    made at another cost than the configured one. If the hasher is busy the
    login goes on without: the next one will do it.
    """
    if not ctx.hasher.outdated(user.password_hash):
        return Login(user)
    try:
        hashed = await ctx.hasher.hash(password)
    except HasherBusy:
        return Login(user)
    current = ctx.state.users.get(user.name)
    if current is not None and not current.disabled and current.password_hash == user.password_hash:
        return Login(current, records=(UserPut(attrs.evolve(current, password_hash=hashed)),))
    # Changed while hashing: a concurrent login's rehash, or a new password.
    again = await check_password(ctx, user.name, password)
    if again is None:
        raise deny(errors.invalid_grant(WRONG_LOGIN), user=user.name,
                   reason="the user changed during the login", **context)
    return Login(again)
