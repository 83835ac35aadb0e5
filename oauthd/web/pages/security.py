"""
What keeps the pages safe in a browser: the headers every page carries (a
strict Content-Security-Policy, no framing, no referrer, no caching), the
cookies (C{HttpOnly}, C{SameSite=Lax}, and C{Secure} with the C{__Host-}
prefix under an https issuer), and the CSRF token every form carries.

The CSRF token is derived from a random cookie the browser holds
(C{oauthd_csrf}): a form posted back is accepted only if its C{csrf} field
is that cookie's token. A page on another site can neither read the cookie
(C{HttpOnly}, and another origin) nor the form, so it cannot forge a post;
the token needs no server-side secret, so it survives restarts and works
before anyone has logged in.

The request's own parameters travel in hidden fields too, so every form
also carries their L{binding}: an HMAC of the parameters and the browser's
CSRF cookie, under a key derived from a signing key (L{FormKeys}), which
every node over a shared log holds and a restart keeps, so a form shown by
one node or before a restart is taken by any. A form whose parameters were
edited (C{prompt=login} dropped, C{max_age} raised) is refused. The consent
page that follows a login carries a second
binding, to the new session, which tells the consent post that the login
was made for this request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest

from oauthd.config import Config
from oauthd.protocol.tokens import RandomBytes
from oauthd.state.keys import Keys

CSRF_COOKIE = "oauthd_csrf"
SESSION_COOKIE = "oauthd_session"
CSRF_FIELD = "csrf"

_CSRF_LABEL = b"oauthd form token v1"
_COOKIE_BYTES = 32
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[A-Za-z0-9.\-\[\]:]+")


def cookie_name(config: Config, name: str) -> str:
    """
    The name a cookie goes by: with the C{__Host-} prefix under an https
    issuer, so that it is only ever set by this host, over https, for C{/}.
    """
    return name if config.issuer_is_plain_http else "__Host-" + name


def set_cookie(request: IRequest, config: Config, name: str, value: str,
               max_age: int | None = None) -> None:
    """
    Set a cookie for the whole host, hidden from scripts, sent on top-level
    navigations from other sites (the client sends the browser here) but
    not on their posts or subresources.

    @param max_age: seconds it lasts; C{None} for the browser's session, C{0}
        to remove it.
    """
    attributes = [f"{cookie_name(config, name)}={value}", "Path=/"]
    if max_age is not None:
        attributes.append(f"Max-Age={max_age}")
    if not config.issuer_is_plain_http:
        attributes.append("Secure")
    attributes += ["HttpOnly", "SameSite=Lax"]
    request.responseHeaders.addRawHeader(b"Set-Cookie", "; ".join(attributes).encode("ascii"))


def get_cookie(request: IRequest, config: Config, name: str) -> str | None:
    """
    A cookie's value, if the browser sent one of the shape this server sets;
    anything else is as if none was sent.
    """
    raw = request.getCookie(cookie_name(config, name).encode("ascii"))
    if raw is None:
        return None
    value = raw.decode("latin-1")
    return value if _COOKIE_VALUE.fullmatch(value) else None


def csrf_token(cookie: str) -> str:
    """
    The form token for the browser holding the CSRF cookie C{cookie}.
    """
    return hmac.new(cookie.encode("ascii"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_cookie(request: IRequest, config: Config, random_bytes: RandomBytes) -> str:
    """
    The browser's CSRF cookie, set now if it has none.
    """
    cookie = get_cookie(request, config, CSRF_COOKIE)
    if cookie is None:
        cookie = random_bytes(_COOKIE_BYTES).hex()
        set_cookie(request, config, CSRF_COOKIE, cookie)
    return cookie


def csrf_valid(request: IRequest, config: Config, posted: str | None) -> bool:
    """
    Whether a posted form carries the token of the browser's CSRF cookie.
    """
    cookie = get_cookie(request, config, CSRF_COOKIE)
    if cookie is None or not posted:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters.
    return hmac.compare_digest(csrf_token(cookie).encode("ascii"), posted.encode("utf-8"))


def binding(key: bytes, cookie: str, params: Iterable[tuple[str, str]], session: str = "") -> str:
    """
    What binds a request's parameters to the browser holding the CSRF
    cookie C{cookie}, under the daemon's C{key}; with C{session} (a browser
    session's key), what says that session's login was made for them.
    """
    message = json.dumps(["oauthd request binding v1", cookie, session, [list(p) for p in params]])
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


class FormKeys:
    """
    The keys a form's binding is made and checked under, derived from the
    signing keys (L{oauthd.state.keys}): their private parts are a secret
    that the log already shares with every node and keeps across restarts.
    A form is bound under the newest published key, which stays longest,
    and checked under every published one, so it stays good until the key
    it was bound under leaves the JWKS. C{fallback} serves while there is
    no key at all (before the first keys are committed at start).
    """

    def __init__(self, keys: Keys, fallback: bytes) -> None:
        self._keys = keys
        self._fallback = fallback
        self._derived: dict[str, bytes] = {}  # by kid: deriving serialises the JWK

    def _derive(self, kid: str, jwk: dict[str, object]) -> bytes:
        key = self._derived.get(kid)
        if key is None:
            secret = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode("utf-8")
            key = hmac.new(secret, b"oauthd form binding key v1", hashlib.sha256).digest()
            self._derived[kid] = key
        return key

    def all(self, now: float) -> list[bytes]:
        """
        Every key a posted binding may be under, the one to bind under first.
        """
        published = self._keys.published(now)
        return [self._derive(key.kid, key.jwk) for key in reversed(published)] or [self._fallback]

    def current(self, now: float) -> bytes:
        return self.all(now)[0]


def binding_valid(key: bytes, cookie: str, params: Iterable[tuple[str, str]], posted: str,
                  session: str = "") -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters.
    expected = binding(key, cookie, params, session).encode("ascii")
    return hmac.compare_digest(expected, posted.encode("utf-8"))


def redirect_source(redirect_uri: str) -> str | None:
    """
    The CSP source expression that allows a form to end at C{redirect_uri}:
    its origin (C{https://app.example:8443}) or its private-use scheme
    (C{com.example.app:}); C{None} if it cannot be written safely as one
    (then the browser refuses the redirect: safe, and it cannot happen for
    a redirect URI the administration accepted).
    """
    try:
        parts = urlsplit(redirect_uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    if scheme not in ("http", "https"):
        return scheme + ":"
    host = parts.hostname or ""
    if not _HOST.fullmatch(host):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def content_security_policy(form_targets: Iterable[str] = (), script: bool = False) -> str:
    """
    The Content-Security-Policy of a page: nothing but this server's
    stylesheet (and, if C{script}, its static scripts), forms posted only
    here and to C{form_targets} (browsers check C{form-action} on the
    redirect that follows a submit too), never framed, no C{<base>}.
    """
    sources = " ".join(["'self'", *sorted(set(form_targets))])
    directives = [
        "default-src 'none'",
        "style-src 'self'",
        *(["script-src 'self'"] if script else []),
        f"form-action {sources}",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
    return "; ".join(directives)


def page_headers(request: IRequest, csp: str) -> None:
    """
    Set the headers every page carries.
    """
    for name, value in (
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Content-Security-Policy", csp.encode("ascii")),
        (b"X-Frame-Options", b"DENY"),
        (b"Referrer-Policy", b"no-referrer"),
        (b"Cache-Control", b"no-store"),
        (b"Pragma", b"no-cache"),
    ):
        request.setHeader(name, value)
