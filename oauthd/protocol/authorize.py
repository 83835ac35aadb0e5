"""
The authorization endpoint (RFC 6749 section 4.1, with RFC 7636 PKCE,
RFC 9207 C{iss}, RFC 8252 for native apps and OpenID Connect Core's request
parameters): deciding a request, step by step, without any I/O.

The web edge calls L{parse} on every request (the pages post back the
original parameters, so nothing of a pending request is stored), then
L{next_step}, which says what the browser must do next: log in
(L{NeedsLogin}, see L{oauthd.protocol.browser}), consent (L{NeedsConsent},
answered by L{consent}), or nothing: the L{Answer} to send to the client, in
a decision that issues the code.

Errors: L{ShownError} is shown to the user and never redirected (the client
is unknown, or the redirect URI cannot be trusted); L{RedirectedError}
carries its L{Answer} to the client's redirect URI (RFC 6749 section
4.1.2.1). Every answer carries C{iss} and echoes C{state}.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

import attrs
from attrs import frozen

from oauthd.protocol import scopes
from oauthd.protocol.browser import digest, new_secret, seen_records
from oauthd.protocol.context import Context
from oauthd.protocol.tokens import new_grant_id
from oauthd.state.authz_records import AuthCode, BrowserSession, CodeIssued, Consent, ConsentGranted
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import Client
from oauthd.state.records import Record

RESPONSE_MODES = ("query", "form_post")
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
PARAMETERS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "response_mode",
    "code_challenge", "code_challenge_method", "nonce", "prompt", "max_age", "login_hint",
    "ui_locales",
)
"""
The parameters a request's pages carry along (L{AuthorizationRequest.params});
others are ignored.
"""
_MAX_VALUE = 2000
_LOOPBACK = ("127.0.0.1", "::1")
_PORT = re.compile(r"(?::([1-9][0-9]{0,4}))?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@frozen
class AuthorizationRequest:
    """
    A valid authorization request.

    @ivar redirect_uri: where the answer goes (the registered one if the
        request named none).
    @ivar redirect_given: the C{redirect_uri} parameter as sent (C{""} if
        omitted): the token request must repeat it.
    @ivar scope: canonical, within the client's.
    @ivar code_challenge: C{""} only for a PKCE-exempt confidential client
        that sent none.
    @ivar params: the request's own parameters (of L{PARAMETERS}), for the
        pages' hidden fields.
    """

    client: Client
    redirect_uri: str
    redirect_given: str
    response_mode: str = "query"
    state: str = ""
    scope: str = ""
    code_challenge: str = ""
    nonce: str = ""
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @property
    def openid(self) -> bool:
        return "openid" in scopes.names(self.scope)


@frozen
class Answer:
    """
    What goes to the client: a redirect (C{query}) or an auto-submitting
    form (C{form_post}) to C{redirect_uri} with C{params}.
    """

    redirect_uri: str
    response_mode: str
    params: tuple[tuple[str, str], ...]

    @property
    def location(self) -> str:
        """
        The redirect's URL, for C{response_mode=query}.
        """
        if urlsplit(self.redirect_uri).query:
            joiner = "&"
        else:
            joiner = "" if self.redirect_uri.endswith("?") else "?"
        return self.redirect_uri + joiner + urlencode(self.params)


class ShownError(Exception):
    """
    An error shown to the user on a page, never redirected: the client is
    unknown or the redirect URI missing, malformed or not registered.

    @ivar context: audit fields.
    """

    def __init__(self, description: str, **context: object) -> None:
        super().__init__(description)
        self.description = description
        self.context = context


class RedirectedError(Exception):
    """
    An error sent to the client's redirect URI (RFC 6749 section 4.1.2.1):
    C{answer} holds C{error}, C{error_description}, C{state} and C{iss}.
    """

    def __init__(self, ctx: Context, request: AuthorizationRequest, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.request = request
        self.error = error
        self.description = description
        self.answer = error_answer(ctx, request, error, description)
        self.context: dict[str, object] = {"client": request.client.id, "reason": description}


@frozen
class NeedsLogin:
    """
    The browser must log in. C{reason}: C{"no session"}, C{"prompt=login"}
    or C{"max_age"}.
    """

    request: AuthorizationRequest
    reason: str
    login_hint: str


@frozen
class NeedsConsent:
    """
    The user must approve the request: C{scopes} are the scope names asked
    for, to describe.
    """

    request: AuthorizationRequest
    browser: BrowserSession
    scopes: tuple[str, ...]


def error_answer(ctx: Context, request: AuthorizationRequest, error: str, description: str) -> Answer:
    params = [("error", error), ("error_description", description)]
    return _answer(ctx, request, params)


def _answer(ctx: Context, request: AuthorizationRequest, params: list[tuple[str, str]]) -> Answer:
    if request.state:
        params.append(("state", request.state))
    params.append(("iss", ctx.config.issuer))
    return Answer(request.redirect_uri, request.response_mode, tuple(params))


# -- parsing ------------------------------------------------------------------


def parse(ctx: Context, params: Mapping[str, str]) -> AuthorizationRequest:
    """
    The request C{params} make.

    @raise ShownError: if the client or the redirect URI cannot be trusted.
    @raise RedirectedError: for any other error.
    """
    client_id = params.get("client_id", "")
    if not client_id:
        raise ShownError("the request names no client (client_id is missing)")
    client = ctx.state.clients.get(client_id)
    if client is None or not client.enabled:
        raise ShownError("the client is unknown or disabled", reason="unknown client")
    given = params.get("redirect_uri", "")
    redirect_uri = _redirect_uri(ctx, client, given, params.get("scope", ""))
    request = AuthorizationRequest(
        client, redirect_uri, given, state=params.get("state", "")[:_MAX_VALUE],
        params=tuple((name, params[name][:_MAX_VALUE]) for name in PARAMETERS if name in params),
    )

    def refuse(error: str, description: str) -> RedirectedError:
        return RedirectedError(ctx, request, error, description)

    mode = params.get("response_mode", "") or "query"
    if mode not in RESPONSE_MODES:
        raise refuse("invalid_request", "response_mode is query or form_post")
    request = attrs.evolve(request, response_mode=mode)
    if "request" in params:
        raise refuse("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        raise refuse("request_uri_not_supported", "request_uri is not supported")
    response_type = params.get("response_type", "")
    if not response_type:
        raise refuse("invalid_request", "response_type is required")
    if response_type != "code":
        raise refuse("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise refuse("unauthorized_client", "this client may not use the authorization code grant")
    if any(len(params.get(name, "")) > _MAX_VALUE for name in PARAMETERS):
        raise refuse("invalid_request", f"a parameter is longer than {_MAX_VALUE} characters")
    try:
        scope = ctx.scope(params["scope"]) if params.get("scope", "").strip() else client.scope
    except scopes.ScopeError:
        raise refuse("invalid_scope", "the scope names an unknown scope") from None
    if not scopes.within(scope, client.scope):
        raise refuse("invalid_scope", "the requested scope exceeds what the client may be granted")
    prompt = frozenset(params.get("prompt", "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise refuse("invalid_request", "prompt is none, or any of login, consent, select_account")
    max_age_text = params.get("max_age", "")
    if max_age_text and not (max_age_text.isascii() and max_age_text.isdigit() and len(max_age_text) < 10):
        raise refuse("invalid_request", "max_age is a number of seconds")
    return attrs.evolve(
        request, scope=scope, code_challenge=_challenge(client, params, refuse),
        nonce=params.get("nonce", ""), prompt=prompt,
        max_age=int(max_age_text) if max_age_text else None, login_hint=params.get("login_hint", ""),
    )


def _redirect_uri(ctx: Context, client: Client, given: str, scope: str) -> str:
    """
    Where the answer may go: C{given} if registered for the client (a
    loopback one of a public client on any port), or the one registered URI
    if none is given (but not in an OpenID request).
    """
    if not given:
        if len(client.redirect_uris) != 1:
            raise ShownError("redirect_uri is required: the client registered several or none",
                             client=client.id, reason="missing redirect_uri")
        if "openid" in scope.split():
            raise ShownError("redirect_uri is required in an OpenID request",
                             client=client.id, reason="missing redirect_uri")
        uri = client.redirect_uris[0]
    elif given in client.redirect_uris or (client.public and any(
            _same_loopback(given, registered) for registered in client.redirect_uris)):
        uri = given
    else:
        raise ShownError("the redirect_uri is not registered for this client",
                         client=client.id, reason="unregistered redirect_uri")
    if urlsplit(uri).scheme not in ("http", "https") and not client.public:
        raise ShownError("only a public (native) client may use a private-use URI scheme",
                         client=client.id, reason="private-use scheme")
    return uri


def _same_loopback(given: str, registered: str) -> bool:
    """
    Whether C{given} is C{registered}, a loopback IP address over http,
    with any port (RFC 8252 section 7.3): character for character but the
    port, so nothing urlsplit would overlook (tabs, newlines, an empty
    query or fragment, a zero-padded port) can make them differ.
    """
    for host in ("http://127.0.0.1", "http://[::1]"):
        if registered.startswith(host):
            registered_port = _PORT.match(registered, len(host))
            rest = registered[registered_port.end():] if registered_port else ""
            if rest[:1] in ("/", "?", "") and given.startswith(host):
                port = _PORT.match(given, len(host))
                return bool(port and given[port.end():] == rest
                            and int(port.group(1) or 1) <= 65535)
    return False


def _challenge(
    client: Client, params: Mapping[str, str], refuse: Callable[[str, str], RedirectedError],
) -> str:
    """
    The request's PKCE challenge: S256 only, required unless the client is
    a confidential one exempted (C{pkce="optional"}) that sent none.
    """
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "")
    if not challenge:
        if method:
            raise refuse("invalid_request", "code_challenge_method was sent without code_challenge")
        if client.public or client.pkce != "optional":
            raise refuse("invalid_request", "code_challenge is required (PKCE, S256)")
        return ""
    if method != "S256":
        raise refuse("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
    if len(challenge) != 43 or not set(challenge) <= _UNRESERVED:
        raise refuse("invalid_request", "code_challenge is not an S256 challenge")
    return challenge


def s256(verifier: str) -> str:
    """
    The S256 challenge of a PKCE verifier (RFC 7636 section 4.2).
    """
    raw = bytes.fromhex(digest(verifier))
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def valid_verifier(verifier: str) -> bool:
    return 43 <= len(verifier) <= 128 and set(verifier) <= _UNRESERVED


# -- deciding -----------------------------------------------------------------


def next_step(
    ctx: Context, request: AuthorizationRequest, browser: BrowserSession | None, *,
    forced_login_done: bool = False,
) -> NeedsLogin | NeedsConsent | Decision[Answer]:
    """
    What the browser must do next for C{request}, given its live session
    (L{oauthd.protocol.browser.browser_session}), if any.

    @param forced_login_done: the browser has just logged in for this
        request, so C{prompt=login} and C{max_age} are satisfied (however
        long committing the login took).
    @raise RedirectedError: C{login_required} or C{consent_required} when
        C{prompt=none} and a page would be needed.
    """
    silent = "none" in request.prompt
    reason = _login_due(ctx, request, browser, forced_login_done)
    if reason:
        if silent:
            raise RedirectedError(ctx, request, "login_required", "the user must log in")
        return NeedsLogin(request, reason, request.login_hint)
    assert browser is not None
    held = ctx.state.authz.consent(browser.user, request.client.id)
    if ("consent" in request.prompt or held is None or not scopes.within(request.scope, held.scope)
            or claimable(request)):
        if silent:
            raise RedirectedError(ctx, request, "consent_required", "the user must approve the request")
        return NeedsConsent(request, browser, tuple(sorted(scopes.names(request.scope))))
    return _issue(ctx, request, browser, [])


def _login_due(
    ctx: Context, request: AuthorizationRequest, browser: BrowserSession | None, fresh: bool,
) -> str:
    """
    Why the browser must log in for C{request} (a L{NeedsLogin} reason), or
    C{""}; C{fresh}: its session's login was made for this request, which
    satisfies C{prompt=login} and C{max_age}.
    """
    if browser is None:
        return "no session"
    if fresh:
        return ""
    if "login" in request.prompt:
        return "prompt=login"
    if request.max_age is not None and ctx.now() - browser.auth_time > request.max_age:
        return "max_age"
    return ""


def claimable(request: AuthorizationRequest) -> bool:
    """
    Whether any app on the user's device could receive the answer: a public
    client's loopback or private-use redirect URI. Its consent is asked
    every time (RFC 8252 section 8.6, RFC 6749 section 10.2): a remembered
    one would hand codes silently to an app impersonating the client.
    """
    # A public client's http URIs are loopback ones (rules.check_redirect_uris).
    return request.client.public and urlsplit(request.redirect_uri).scheme != "https"


def consent(
    ctx: Context, request: AuthorizationRequest, browser: BrowserSession, approved: bool, *,
    logged_in: bool = False,
) -> NeedsLogin | Decision[Answer]:
    """
    The user's answer on the consent page. Approved: the consent is
    remembered (with what was approved before) and a code issued; denied:
    C{access_denied} goes to the client.

    The answer comes in a request of its own, so C{prompt=login} and
    C{max_age} are checked again, as by L{next_step}: only a login made
    for this request (C{logged_in}: the pages vouch that C{browser}'s
    session started on this request's pages) satisfies C{prompt=login}.
    Refused: L{NeedsLogin}. What keeps a person from weakening the request
    by editing its hidden fields (dropping C{prompt=login}) is that the
    pages bind them (L{oauthd.web.pages.security.binding}).
    """
    reason = _login_due(ctx, request, browser, logged_in)
    if reason:
        return NeedsLogin(request, reason, request.login_hint)
    client = request.client
    if not approved:
        return Decision(
            error_answer(ctx, request, "access_denied", "the user denied the request"),
            audit=[audit("authorize.consent", "denied", client=client.id, user=browser.user,
                         scope=request.scope)],
        )
    held = ctx.state.authz.consent(browser.user, client.id)
    scope = request.scope if held is None else _union(held.scope, request.scope)
    granted = ConsentGranted(Consent(browser.user, client.id, scope, ctx.now()))
    return _issue(ctx, request, browser, [granted])


def _union(a: str, b: str) -> str:
    names = scopes.names(a) | scopes.names(b)
    return scopes.ALL if scopes.ALL in names else " ".join(sorted(names))


def _issue(
    ctx: Context, request: AuthorizationRequest, browser: BrowserSession, records: list[Record],
) -> Decision[Answer]:
    """
    Issue a code for C{request} in C{browser}'s session.
    """
    secret = new_secret(ctx)
    now = ctx.now()
    code = AuthCode(
        digest(secret), request.client.id, browser.user, request.scope, request.redirect_uri,
        request.redirect_given, request.code_challenge, request.nonce, browser.auth_time,
        browser.key, new_grant_id(ctx.random_bytes), now, ctx.config.authorization_code_ttl,
    )
    context: dict[str, object] = {"client": request.client.id, "user": browser.user}
    return Decision(
        _answer(ctx, request, [("code", secret)]),
        [*records, *seen_records(ctx, browser), CodeIssued(code)],
        [audit("authorize.code", "ok", scope=request.scope, session=browser.handle,
               consent="given" if records else "remembered", **context)],
        context=context,
    )
