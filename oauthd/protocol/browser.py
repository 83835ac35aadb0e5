"""
Logging a browser in at the authorization endpoint: the user's password
(under the same rate limits as the password grant, L{login.login}), then,
for a user with a second factor, a TOTP or recovery code
(L{second_factor.verify}); the result is a browser session, named by a
cookie whose value is shown once and kept only as its digest.

Between the two steps the page holds a half login's token (a hidden field);
the half login lasts L{HALF_LOGIN_TTL} seconds. A session lasts while it is
used at least every C{browser_session_idle} seconds, and
C{browser_session_max_age} seconds at most (both configured; the lifetimes
in force when it started are recorded with it, and the shorter of those and
the configured ones count). A new password, a second factor turned off, or
the user disabled or removed ends the user's sessions
(L{oauthd.protocol.admin.users.login_revocations}, L{oauthd.state.authz}).

Usage, at the web edge::

    decision = await browser.password_step(ctx, username, password, ip)
    answer = await store.commit(decision)
    if isinstance(answer, browser.HalfLogin):
        ... # ask for the code, keeping answer.token in the form
        login = await store.commit(browser.second_factor_step(ctx, token, code, ip))
    ... # set the cookie to login.secret
    session = browser.browser_session(ctx, cookie)   # on later requests
"""

from __future__ import annotations

import base64

from attrs import frozen

from oauthd.protocol import errors, second_factor
from oauthd.protocol.context import Context
from oauthd.protocol.errors import deny
from oauthd.protocol.login import credentials, login
from oauthd.protocol.tokens import session_id
from oauthd.state.authz_records import (
    BrowserEnded,
    BrowserSeen,
    BrowserSession,
    BrowserStarted,
    HalfLoginEnded,
    HalfLoginStarted,
    PendingSecondFactor,
)
from oauthd.state.decision import AuditEvent, Decision, audit
from oauthd.state.records import Record

HALF_LOGIN_TTL = 300
"""
Seconds a user has to give the second factor after the password.
"""

SEEN_EVERY = 3600
"""
A session's use is recorded at most this often, or every tenth of its idle
lifetime if that is shorter (the idle lifetime counts from the last record).
"""

SECRET_BYTES = 32
_MAX_SECRET = 100


@frozen(repr=False)
class BrowserLogin:
    """
    A browser logged in: the cookie's value (shown once, never stored) and
    the session it names.
    """

    secret: str
    session: BrowserSession

    def __repr__(self) -> str:
        return f"<BrowserLogin {self.session.handle} user={self.session.user!r}>"


@frozen(repr=False)
class HalfLogin:
    """
    A password that was right, for a user who must give a second factor:
    C{token} (shown once, kept as its digest) carries the login to
    L{second_factor_step}.
    """

    token: str
    user: str
    auth_time: int

    def __repr__(self) -> str:
        return f"<HalfLogin user={self.user!r}>"


def new_secret(ctx: Context) -> str:
    """
    A new browser secret: 256 random bits, base64url without padding.
    """
    return base64.urlsafe_b64encode(ctx.random_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def digest(secret: str) -> str:
    """
    How a browser secret (cookie, half login token, code) is kept.
    """
    return session_id(secret)


async def password_step(
    ctx: Context, username: str, password: str, ip: str, *, replacing: str = "",
    **context: object,
) -> Decision[BrowserLogin | HalfLogin]:
    """
    Check a user's own password (an app password does not log a browser
    in). The answer is a L{BrowserLogin}, or a L{HalfLogin} for a user with
    a second factor.

    @param replacing: the browser's session cookie, if it sent one: the
        session it names ends when the new one starts (one session per
        browser, whoever logs in).

    @raise OAuthError: C{invalid_request} for a missing field,
        C{invalid_grant} for a wrong password or unknown user, 429 under the
        login rate limits, 503 if too many passwords are being checked.
    """
    name, password = credentials({"username": username, "password": password})
    logged_in = await login(ctx, name, password, ip, browser=True, **context)
    user = logged_in.user
    now = ctx.now()
    if not ctx.second_factor(user):
        login_, events = _started(ctx, user.name, ("pwd",), ip, context)
        return Decision(login_, [*logged_in.records, *_replaced(ctx, replacing),
                                 BrowserStarted(login_.session)], events,
                        context={"user": user.name, "ip": ip, **context})
    token = new_secret(ctx)
    half = PendingSecondFactor(digest(token), user.name, now, now + HALF_LOGIN_TTL)
    return Decision(
        HalfLogin(token, user.name, now), [*logged_in.records, HalfLoginStarted(half)],
        [audit("browser.login", "second factor due", user=user.name, ip=ip, **context)],
        context={"user": user.name, "ip": ip, **context},
    )


def second_factor_step(
    ctx: Context, half_token: str, code: str, ip: str, *, replacing: str = "",
    **context: object,
) -> Decision[BrowserLogin]:
    """
    The second step of a L{HalfLogin}: C{code} must be the user's TOTP or a
    recovery code (L{second_factor.verify}, with its rate limits). A wrong
    code leaves the half login for another try. C{replacing}: as for
    L{password_step}.

    @raise OAuthError: C{invalid_grant} if the half login is unknown or
        expired (log in again) or the code is wrong; 429 under the limits.
    """
    held = ctx.state.authz.halves.get(digest(half_token[:_MAX_SECRET]))
    if held is None or not held.live(ctx.now()):
        raise deny(errors.invalid_grant("the login took too long; log in again"), ip=ip, **context)
    verified = second_factor.verify(ctx, held.user, code, ip, **context)
    login_, events = _started(ctx, held.user, ("pwd", "otp"), ip, context)
    return Decision(
        login_, [*verified.records, HalfLoginEnded(held.key), *_replaced(ctx, replacing),
                 BrowserStarted(login_.session)],
        [*verified.audit, *events], context={"user": held.user, "ip": ip, **context},
    )


def _started(
    ctx: Context, user: str, amr: tuple[str, ...], ip: str, context: dict[str, object],
) -> tuple[BrowserLogin, list[AuditEvent]]:
    """
    A new session for C{user}, and the audit event of its login.
    """
    now = ctx.now()
    secret = new_secret(ctx)
    config = ctx.config
    session = BrowserSession(digest(secret), user, now, amr, now, config.browser_session_idle,
                             config.browser_session_max_age)
    event = audit("browser.login", "ok", user=user, ip=ip, amr=" ".join(amr),
                  session=session.handle, **context)
    return BrowserLogin(secret, session), [event]


def browser_session(ctx: Context, cookie_value: str) -> BrowserSession | None:
    """
    The live session a browser's cookie names, or C{None}: unknown, ended,
    idle or old beyond its lifetimes, its user disabled, or made without
    the second factor the user has now.
    """
    if not cookie_value or len(cookie_value) > _MAX_SECRET:
        return None
    session = ctx.state.authz.browsers.get(digest(cookie_value))
    now = ctx.now()
    if session is None or not session.live(now):
        return None
    config = ctx.config
    seen = max(session.last_seen, session.issued_at)
    if now >= session.issued_at + config.browser_session_max_age or now >= seen + config.browser_session_idle:
        return None
    user = ctx.state.users.get(session.user)
    if user is None or user.disabled:
        return None
    if ctx.second_factor(user) and "otp" not in session.amr:
        return None
    return session


def seen_records(ctx: Context, session: BrowserSession) -> list[Record]:
    """
    The record of a session's use, if the last one is older than
    L{SEEN_EVERY}.
    """
    now = ctx.now()
    every = min(SEEN_EVERY, ctx.config.browser_session_idle // 10)
    if now - max(session.last_seen, session.issued_at) < every:
        return []
    return [BrowserSeen(session.key, now)]


def touch(ctx: Context, session: BrowserSession) -> Decision[None]:
    """
    Record that C{session} was used (at most every L{SEEN_EVERY} seconds,
    L{seen_records}; otherwise the decision changes nothing).
    """
    return Decision(None, seen_records(ctx, session))


def _named(ctx: Context, cookie_value: str) -> BrowserSession | None:
    """
    The session a browser's cookie names, live or not.
    """
    if not cookie_value or len(cookie_value) > _MAX_SECRET:
        return None
    return ctx.state.authz.browsers.get(digest(cookie_value))


def _replaced(ctx: Context, cookie_value: str) -> list[Record]:
    session = _named(ctx, cookie_value)
    return [] if session is None else [BrowserEnded(session.key)]


def logout(ctx: Context, cookie_value: str) -> Decision[None]:
    """
    End the session a browser's cookie names, if there is one.
    """
    session = _named(ctx, cookie_value)
    if session is None:
        return Decision(None)
    return Decision(None, [BrowserEnded(session.key)],
                    [audit("browser.logout", "ok", user=session.user, session=session.handle)])


def session_ends(ctx: Context, user: str) -> list[Record]:
    """
    The records that end every browser session and half login of C{user}.
    """
    authz = ctx.state.authz
    return [
        *(BrowserEnded(s.key) for s in authz.browsers.values() if s.user == user),
        *(HalfLoginEnded(h.key) for h in authz.halves.values() if h.user == user),
    ]
