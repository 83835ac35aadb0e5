"""
The authorization endpoint's pages (C{GET} and C{POST
/api/v1/oauth/authorize}): what the browser sees at each step the protocol
layer (L{oauthd.protocol.authorize}, L{oauthd.protocol.browser}) decides.

Every page posts back to the endpoint with the request's own parameters as
hidden fields, the step's fields and the CSRF token; every post is checked
and parsed from scratch, so nothing of a pending request is kept here. A
post without the browser's CSRF token, or whose request parameters differ
from those the page showed (L{security.binding}), changes nothing. A
request that cannot go back to its client (unknown client, unregistered
redirect URI, malformed input) is shown an error page and never redirected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from oauthd.protocol import browser as browsers
from oauthd.protocol import misses
from oauthd.protocol.authorize import (
    Answer,
    AuthorizationRequest,
    NeedsConsent,
    NeedsLogin,
    RedirectedError,
    ShownError,
    consent,
    next_step,
    parse,
)
from oauthd.protocol.context import Context
from oauthd.protocol.errors import OAuthError, deny
from oauthd.state.authz_records import BrowserSession
from oauthd.state.decision import Decision
from oauthd.state.follower import MissGate, caught_up
from oauthd.state.store import Store
from oauthd.web import parsing
from oauthd.web.pages import security, views
from oauthd.web.pages.base import Page, PageController, refusal, sentence

USERNAME, PASSWORD, CODE, HALF_LOGIN, CONSENT = "username", "password", "otp", "login", "consent"
BOUND, LOGGED_IN = "bound", "logged_in"
PAGE_FIELDS = frozenset({USERNAME, PASSWORD, CODE, HALF_LOGIN, CONSENT, security.CSRF_FIELD})
"""
The fields the pages add to a request's own parameters (besides
L{BINDING_FIELDS}), which make a post a page's form.
"""
BINDING_FIELDS = frozenset({BOUND, LOGGED_IN})
"""
The fields that bind a request's parameters to the browser, and a login to
the request (L{security.binding}); alone they do not make a post a page's
form.
"""

WRONG_PASSWORD = "The user name or password is not right."
WRONG_CODE = "That code is not right, or it was used already. Try the next one."
FORGED = ("This form expired or was not sent by this site, so nothing was done. "
          "Go back to the application and start again.")


class AuthorizePages(PageController):
    """
    The authorization endpoint's pages over C{ctx}, committing through
    C{store}; C{ip} names a request's client address, C{audit} records a
    refusal (every refusal is audited once, as the API's are).
    """

    def __init__(self, ctx: Context, store: Store, ip: Callable[[IRequest], str],
                 audit: Callable[[IRequest, OAuthError], None]) -> None:
        super().__init__(ctx, store, audit)
        self._ip = ip
        self._binding_keys = security.FormKeys(ctx.state.keys, ctx.random_bytes(32))
        self._misses = MissGate(ctx.clock)

    # -- entry points -----------------------------------------------------------

    def get(self, request: IRequest) -> Page:
        if self._session_unknown(request):
            # A login made on another node just now, perhaps.
            return caught_up(self._store).addCallback(lambda _: self._get(request))
        return self._get(request)

    def post(self, request: IRequest) -> Page:
        if self._session_unknown(request):
            return caught_up(self._store).addCallback(lambda _: self._post(request))
        return self._post(request)

    def _session_unknown(self, request: IRequest) -> bool:
        return (self._store.follower is not None
                and misses.browser(self._ctx, self._session_cookie(request))
                and self._misses.admit(self._ip(request)))

    def _get(self, request: IRequest) -> Page:
        try:
            params = parsing.query(request)
        except OAuthError as error:
            return self._refused(request, error)
        return self._start(request, params)

    def _post(self, request: IRequest) -> Page:
        try:
            params = parsing.params(request, self._ctx.config.max_body)
        except OAuthError as error:
            return self._refused(request, error)
        binding = {name: params.pop(name) for name in BINDING_FIELDS & params.keys()}
        fields = {name: params.pop(name) for name in PAGE_FIELDS & params.keys()}
        if not fields:
            # An authorization request sent as a form (OpenID Connect Core
            # 3.1.2.1): nothing more than its GET, which any site can cause.
            return self._start(request, params)
        if not security.csrf_valid(request, self._ctx.config, fields.get(security.CSRF_FIELD)):
            self._audit(request, OAuthError("invalid_request", "CSRF token missing or wrong", 403))
            return self._error(request, "Form expired", FORGED, 403)
        auth = self._parse(request, params)
        if isinstance(auth, bytes):
            return auth
        if not self._bound(request, auth, binding.get(BOUND, "")):
            self._audit(request, OAuthError("invalid_request", "the form's request was changed", 403))
            return self._error(request, "Form expired", FORGED, 403)
        if CONSENT in fields:
            return self._consent(request, auth, fields[CONSENT], binding.get(LOGGED_IN, ""))
        if CODE in fields or HALF_LOGIN in fields:
            return self._second_factor(request, auth, fields.get(HALF_LOGIN, ""), fields.get(CODE, ""))
        if USERNAME in fields or PASSWORD in fields:
            return self._password(request, auth, fields.get(USERNAME, ""), fields.get(PASSWORD, ""))
        return self._next(request, auth, self._browser(request))

    def _start(self, request: IRequest, params: dict[str, str]) -> Page:
        auth = self._parse(request, params)
        if isinstance(auth, bytes):
            return auth
        return self._next(request, auth, self._browser(request))

    def _bound(self, request: IRequest, auth: AuthorizationRequest, posted: str,
               session: str = "") -> bool:
        """
        Whether a posted form's binding shows that a page of this daemon
        showed C{auth}'s parameters to this browser (with C{session}: after
        that session's login, L{security.binding}).
        """
        cookie = security.get_cookie(request, self._ctx.config, security.CSRF_COOKIE)
        return cookie is not None and any(
            security.binding_valid(key, cookie, auth.params, posted, session)
            for key in self._binding_keys.all(self._ctx.now()))

    def _parse(self, request: IRequest, params: dict[str, str]) -> AuthorizationRequest | bytes:
        """
        The request C{params} make, or the page refusing it.
        """
        try:
            return parse(self._ctx, params)
        except ShownError as error:
            refusal = deny(OAuthError("invalid_request", error.description), **error.context)
            self._audit(request, refusal)
            return self._error(request, "This request cannot be completed",
                               sentence(error.description))
        except RedirectedError as error:
            return self._redirected(request, error)

    def _redirected(self, request: IRequest, error: RedirectedError) -> bytes:
        self._audit(request, deny(OAuthError(error.error, error.description), **error.context))
        return self._answer(request, error.request, error.answer)

    # -- steps --------------------------------------------------------------------

    def _next(self, request: IRequest, auth: AuthorizationRequest, browser: BrowserSession | None,
              logged_in: bool = False) -> Page:
        try:
            step = next_step(self._ctx, auth, browser, forced_login_done=logged_in)
        except RedirectedError as error:
            return self._redirected(request, error)
        if isinstance(step, NeedsLogin):
            return self._login_page(request, auth, username=step.login_hint)
        if isinstance(step, NeedsConsent):
            return self._consent_page(request, auth, step.browser, step.scopes, logged_in)
        return self._committed(request, step, lambda answer: self._answer(request, auth, answer))

    def _password(self, request: IRequest, auth: AuthorizationRequest, username: str,
                  password: str) -> Page:
        if not username or not password:
            return self._login_page(request, auth, "Enter your user name and password.",
                                    username, status=400)
        decided = Deferred.fromCoroutine(browsers.password_step(
            self._ctx, username, password, self._ip(request), replacing=self._session_cookie(request),
            client=auth.client.id))

        def logged_in(login: browsers.BrowserLogin | browsers.HalfLogin) -> Page:
            if isinstance(login, browsers.HalfLogin):
                return self._second_factor_page(request, auth, login.user, login.token)
            return self._logged_in(request, auth, login)

        def refused(failure: Failure) -> Page:
            error = refusal(failure)
            self._audit(request, error)
            return self._login_page(request, auth, login_problem(error, WRONG_PASSWORD),
                                    username, status=error.status, headers=error.headers)

        return self._committing(decided).addCallbacks(logged_in, refused)

    def _second_factor(self, request: IRequest, auth: AuthorizationRequest, token: str,
                       code: str) -> Page:
        held = self._ctx.state.authz.halves.get(browsers.digest(token)) if token else None
        if held is None or not held.live(self._ctx.now()):
            return self._login_page(request, auth, "That took too long. Sign in again.", status=400)
        if not code:
            return self._second_factor_page(request, auth, held.user, token,
                                            "Enter the code from your authenticator app.", 400)
        try:
            decided = browsers.second_factor_step(
                self._ctx, token, code, self._ip(request), replacing=self._session_cookie(request),
                client=auth.client.id)
        except OAuthError as error:
            self._audit(request, error)
            return self._second_factor_page(request, auth, held.user, token,
                                            login_problem(error, WRONG_CODE), error.status,
                                            error.headers)
        return self._committed(request, decided,
                               lambda login: self._logged_in(request, auth, login))

    def _logged_in(self, request: IRequest, auth: AuthorizationRequest,
                   login: browsers.BrowserLogin) -> Page:
        config = self._ctx.config
        security.set_cookie(request, config, security.SESSION_COOKIE, login.secret,
                            max_age=config.browser_session_max_age)
        return self._next(request, auth, login.session, logged_in=True)

    def _consent(self, request: IRequest, auth: AuthorizationRequest, answer: str,
                 logged_in: str) -> Page:
        if answer not in ("approve", "deny"):
            return self._error(request, "Invalid request", "The answer must be approve or deny.")
        browser = self._browser(request)
        if browser is None:
            return self._login_page(request, auth, "Your session ended. Sign in again.", status=400)
        # A consent page shown right after a login says so, bound to the new
        # session: prompt=login and max_age are met by that login only.
        fresh = bool(logged_in) and self._bound(request, auth, logged_in, browser.key)
        try:
            decided = consent(self._ctx, auth, browser, answer == "approve", logged_in=fresh)
        except RedirectedError as error:
            return self._redirected(request, error)
        if isinstance(decided, NeedsLogin):
            return self._login_page(request, auth, "Sign in again to continue.",
                                    username=decided.login_hint)
        return self._committed(request, decided, lambda reply: self._answer(request, auth, reply))

    # -- committing -----------------------------------------------------------------

    def _committing(self, decided: Deferred[Decision[Any]]) -> Deferred[Any]:
        return decided.addCallback(self._store.commit)

    # -- rendering --------------------------------------------------------------------

    def _fields(self, request: IRequest, auth: AuthorizationRequest,
                *extra: tuple[str, str]) -> list[tuple[str, str]]:
        cookie = security.csrf_cookie(request, self._ctx.config, self._ctx.random_bytes)
        own = [(name, value) for name, value in auth.params if name not in PAGE_FIELDS]
        bound = security.binding(self._binding_keys.current(self._ctx.now()), cookie, auth.params)
        return [*own, *extra, (BOUND, bound), self._csrf_field(request, cookie)]

    def _targets(self, auth: AuthorizationRequest) -> tuple[str, ...]:
        source = security.redirect_source(auth.redirect_uri)
        return () if source is None else (source,)

    def _login_page(self, request: IRequest, auth: AuthorizationRequest, error: str = "",
                    username: str = "", status: int = 200,
                    headers: dict[str, str] | None = None) -> bytes:
        body = views.login_page(site=self._site, client_name=auth.client.name,
                                fields=self._fields(request, auth), error=error, username=username)
        return self._show(request, body, status, self._targets(auth), headers=headers)

    def _second_factor_page(self, request: IRequest, auth: AuthorizationRequest, user: str,
                            token: str, error: str = "", status: int = 200,
                            headers: dict[str, str] | None = None) -> bytes:
        body = views.second_factor_page(site=self._site, client_name=auth.client.name, user=user,
                                        fields=self._fields(request, auth, (HALF_LOGIN, token)),
                                        error=error)
        return self._show(request, body, status, self._targets(auth), headers=headers)

    def _consent_page(self, request: IRequest, auth: AuthorizationRequest, browser: BrowserSession,
                      scopes: tuple[str, ...], logged_in: bool) -> bytes:
        fields = self._fields(request, auth)
        if logged_in:
            cookie = security.csrf_cookie(request, self._ctx.config, self._ctx.random_bytes)
            key = self._binding_keys.current(self._ctx.now())
            fields.insert(-1, (LOGGED_IN, security.binding(key, cookie, auth.params, browser.key)))
        body = views.consent_page(site=self._site, client_name=auth.client.name, user=browser.user,
                                  scopes=scopes, fields=fields)
        return self._show(request, body, 200, self._targets(auth))

    def _answer(self, request: IRequest, auth: AuthorizationRequest, answer: Answer) -> bytes:
        """
        Send C{answer} to the client: a redirect, or a form the browser posts.
        """
        if answer.response_mode == "form_post":
            body = views.form_post_page(site=self._site, client_name=auth.client.name,
                                        redirect_uri=answer.redirect_uri, params=answer.params)
            return self._show(request, body, 200, self._targets(auth), script=True)
        request.setResponseCode(302)
        security.page_headers(request, security.content_security_policy())
        request.setHeader(b"Location", answer.location.encode("utf-8"))
        return b""


def login_problem(error: OAuthError, wrong: str) -> str:
    """
    What the login pages say about a refused password or code: nothing that
    tells whether a user exists.
    """
    if error.status == 429:
        return "Too many attempts. Wait a little, then try again."
    if error.status == 503:
        return "The server is busy. Try again in a moment."
    if error.error == "invalid_request":
        return sentence(error.description)
    return wrong
