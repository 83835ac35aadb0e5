"""
What the authorization endpoint keeps (issue 14), and its records: codes,
browser sessions, half-done logins (a password checked, the second factor
to come) and users' consents. L{oauthd.state.records} reads and writes these
records beside the others; L{oauthd.state.authz} holds them in memory.

Every secret here (a code, a browser session's cookie, a half login's
token) is kept as the SHA-256 hex digest of its value, its C{key}::

    code     {code fields}                CodeIssued        a code issued
    code-    key                          CodeRedeemed      the code was redeemed
    browser  {session fields}             BrowserStarted    a browser logged in
    browser~ key last_seen                BrowserSeen       the session was used
    browser- key                          BrowserEnded      logged out, or ended by an admin change
    half     key user auth_time expires_at  HalfLoginStarted  a password right, a second factor due
    half-    key                          HalfLoginEnded    used or given up
    consent  user client_id scope granted_at  ConsentGranted  the user lets the client have scope
    consent- user client_id               ConsentRevoked    no more
    login    grant auth_time amr sid expires_at  GrantLogin  the login an OpenID grant came from
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import frozen


@frozen
class AuthCode:
    """
    An authorization code (RFC 6749 section 4.1), bound to everything the
    token request must match.

    @ivar key: the SHA-256 hex digest of the code.
    @ivar redirect_uri: where the code was sent.
    @ivar redirect_given: the C{redirect_uri} parameter as the request sent
        it (C{""} if omitted): the token request must repeat it.
    @ivar challenge: the PKCE S256 challenge, C{""} for none.
    @ivar browser: the key of the browser session it was issued in.
    @ivar grant: the grant id every token redeemed from it carries.
    @ivar redeemed: it was redeemed (a second use revokes the grant).
    """

    key: str
    client_id: str
    user: str
    scope: str
    redirect_uri: str
    redirect_given: str
    challenge: str
    nonce: str
    auth_time: int
    browser: str
    grant: str
    issued_at: int
    lifetime: int
    redeemed: bool = False

    def live(self, now: float) -> bool:
        return now < self.issued_at + self.lifetime


@frozen
class BrowserSession:
    """
    A browser logged in at the authorization endpoint, named by a cookie.

    @ivar key: the SHA-256 hex digest of the cookie's value.
    @ivar auth_time: when the user authenticated.
    @ivar amr: the authentication methods used: C{("pwd",)} or
        C{("pwd", "otp")}.
    @ivar idle: seconds it lasts unused.
    @ivar max_age: seconds it lasts at most, from C{issued_at}.
    @ivar last_seen: when it was last used (written at most hourly).
    """

    key: str
    user: str
    auth_time: int
    amr: tuple[str, ...]
    issued_at: int
    idle: int
    max_age: int
    last_seen: int = 0

    @property
    def handle(self) -> str:
        """
        A short public name for the audit trail (not enough to find it by).
        """
        return "br" + self.key[:10]

    def live(self, now: float) -> bool:
        seen = max(self.last_seen, self.issued_at)
        return now < self.issued_at + self.max_age and now < seen + self.idle


@frozen
class PendingSecondFactor:
    """
    A browser login whose password was right, waiting for the second factor.

    @ivar key: the SHA-256 hex digest of its token.
    """

    key: str
    user: str
    auth_time: int
    expires_at: int

    def live(self, now: float) -> bool:
        return now < self.expires_at


@frozen
class Consent:
    """
    A user's remembered consent: C{client_id} may have C{scope}.
    """

    user: str
    client_id: str
    scope: str
    granted_at: int


@frozen
class GrantLogin:
    """
    The login an OpenID Connect grant came from, for the ID tokens its
    refresh tokens get (OpenID Connect Core section 12.2: the original
    C{auth_time}).

    @ivar amr: the authentication methods, as the browser session has them.
    @ivar sid: the browser session's handle (the ID token's C{sid}).
    @ivar expires_at: when the grant's family ends at the latest.
    """

    grant: str
    auth_time: int
    amr: tuple[str, ...]
    sid: str
    expires_at: int

    def live(self, now: float) -> bool:
        return now < self.expires_at


@frozen
class CodeIssued:
    code: AuthCode


@frozen
class CodeRedeemed:
    key: str


@frozen
class BrowserStarted:
    session: BrowserSession


@frozen
class BrowserSeen:
    key: str
    at: int


@frozen
class BrowserEnded:
    key: str


@frozen
class HalfLoginStarted:
    half: PendingSecondFactor


@frozen
class HalfLoginEnded:
    key: str


@frozen
class ConsentGranted:
    consent: Consent


@frozen
class ConsentRevoked:
    user: str
    client_id: str


AuthzRecord = (
    CodeIssued | CodeRedeemed | BrowserStarted | BrowserSeen | BrowserEnded | HalfLoginStarted
    | HalfLoginEnded | ConsentGranted | ConsentRevoked | GrantLogin
)
AUTHZ_TYPES = (
    CodeIssued, CodeRedeemed, BrowserStarted, BrowserSeen, BrowserEnded, HalfLoginStarted,
    HalfLoginEnded, ConsentGranted, ConsentRevoked, GrantLogin,
)

_CODE_FIELDS = (
    "key", "client_id", "user", "scope", "redirect_uri", "redirect_given", "challenge", "nonce",
    "auth_time", "browser", "grant", "issued_at", "lifetime",
)
_CODE_INTS = frozenset({"auth_time", "issued_at", "lifetime"})
_BROWSER_FIELDS = ("key", "user", "auth_time", "amr", "issued_at", "idle", "max_age")
_BROWSER_INTS = frozenset({"auth_time", "issued_at", "idle", "max_age"})


def _plain(tag: str, *values: object) -> str:
    text = [str(value) for value in values]
    if any("\t" in value for value in text):
        raise ValueError("record fields may not contain a tab")
    return "\t".join((tag, *text))


def _json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def encode(record: AuthzRecord) -> str:
    """
    A record as the text of its payload.

    @raise ValueError: if a plain field contains a tab.
    """
    match record:
        case CodeIssued(code=code):
            return "code\t" + _json({name: getattr(code, name) for name in _CODE_FIELDS})
        case CodeRedeemed(key=key):
            return _plain("code-", key)
        case BrowserStarted(session=s):
            fields = {name: getattr(s, name) for name in _BROWSER_FIELDS}
            fields["amr"] = list(s.amr)
            return "browser\t" + _json(fields)
        case BrowserSeen(key=key, at=at):
            return _plain("browser~", key, at)
        case BrowserEnded(key=key):
            return _plain("browser-", key)
        case HalfLoginStarted(half=h):
            return _plain("half", h.key, h.user, h.auth_time, h.expires_at)
        case HalfLoginEnded(key=key):
            return _plain("half-", key)
        case ConsentGranted(consent=c):
            return _plain("consent", c.user, c.client_id, c.scope, c.granted_at)
        case ConsentRevoked(user=user, client_id=client_id):
            return _plain("consent-", user, client_id)
        case GrantLogin(grant=grant, auth_time=auth_time, amr=amr, sid=sid):
            return _plain("login", grant, auth_time, " ".join(amr), sid, record.expires_at)


def _object(text: str, names: tuple[str, ...], ints: frozenset[str]) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict) or set(value) != set(names):
        raise ValueError(f"it does not hold exactly {', '.join(names)}")
    for name in names:
        wanted = int if name in ints else (list if name == "amr" else str)
        if type(value[name]) is not wanted:
            raise ValueError(f"its {name} is not {wanted.__name__}")
    return value


def _code(text: str) -> CodeIssued:
    return CodeIssued(AuthCode(**_object(text, _CODE_FIELDS, _CODE_INTS)))


def _browser(text: str) -> BrowserStarted:
    fields = _object(text, _BROWSER_FIELDS, _BROWSER_INTS)
    if not all(isinstance(method, str) for method in fields["amr"]):
        raise ValueError("its amr is not a list of text")
    fields["amr"] = tuple(fields["amr"])
    return BrowserStarted(BrowserSession(**fields))


DECODERS: dict[str, tuple[int, Callable[..., AuthzRecord]]] = {
    # tag: (fields after the tag, how to make the record of them)
    "code": (1, _code),
    "code-": (1, CodeRedeemed),
    "browser": (1, _browser),
    "browser~": (2, lambda key, at: BrowserSeen(key, int(at))),
    "browser-": (1, BrowserEnded),
    "half": (4, lambda key, user, auth_time, expires_at: HalfLoginStarted(
        PendingSecondFactor(key, user, int(auth_time), int(expires_at)))),
    "half-": (1, HalfLoginEnded),
    "consent": (4, lambda user, client_id, scope, at: ConsentGranted(
        Consent(user, client_id, scope, int(at)))),
    "consent-": (2, ConsentRevoked),
    "login": (5, lambda grant, auth_time, amr, sid, expires_at: GrantLogin(
        grant, int(auth_time), tuple(amr.split()), sid, int(expires_at))),
}


def decode(fields: list[str]) -> AuthzRecord:
    """
    The record of a payload's fields (its tag first), if the tag is one of
    L{DECODERS}.

    @raise ValueError: if they are malformed.
    """
    tag = fields[0]
    count, make = DECODERS[tag]
    if len(fields) != count + 1:
        raise ValueError(f"malformed {tag} record: it has {len(fields)} fields, not {count + 1}")
    try:
        return make(*fields[1:])
    except (TypeError, ValueError) as e:
        raise ValueError(f"malformed {tag} record: {e}") from None
