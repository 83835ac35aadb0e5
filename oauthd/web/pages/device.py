"""
The device verification page (C{GET} and C{POST
/api/v1/oauth/device/verify}, RFC 8628 section 3.3): a user logs in first
(the sign-in pages and browser session of the authorization endpoint, with
the second factor), then enters the code their device shows (or finds it
filled in from C{verification_uri_complete}), sees which client asks for
which scopes beside that code, and allows or denies it.

Every post carries the browser's CSRF token; the user code travels in the
forms, nothing is kept here. Entering a code is possible only when logged
in, and wrong codes are limited per user and per address
(L{oauthd.protocol.device}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from oauthd.protocol import browser as browsers
from oauthd.protocol import device
from oauthd.protocol.context import Context
from oauthd.protocol.errors import OAuthError
from oauthd.state.authz_records import BrowserSession
from oauthd.state.device import DeviceCode
from oauthd.state.store import Store
from oauthd.web import parsing
from oauthd.web.pages import security, views
from oauthd.web.pages.base import Page, PageController, refusal
from oauthd.web.pages.flow import (
    CODE,
    CONSENT,
    FORGED,
    HALF_LOGIN,
    PASSWORD,
    USERNAME,
    WRONG_CODE,
    WRONG_PASSWORD,
    login_problem,
)

USER_CODE = "user_code"
WRONG_USER_CODE = "That code is not right, expired or was used already. Check the code on your device."
CLIENT_NAME = "your device"


class DevicePages(PageController):
    """
    The verification page over C{ctx}, committing through C{store}; C{ip}
    names a request's client address, C{audit} records a refusal.
    """

    def __init__(self, ctx: Context, store: Store, ip: Callable[[IRequest], str],
                 audit: Callable[[IRequest, OAuthError], None]) -> None:
        super().__init__(ctx, store, audit)
        self._ip = ip

    def get(self, request: IRequest) -> Page:
        try:
            params = parsing.query(request)
        except OAuthError as error:
            return self._refused(request, error)
        return self._code_page(request, params.get(USER_CODE, ""))

    def post(self, request: IRequest) -> Page:
        try:
            params = parsing.params(request, self._ctx.config.max_body)
        except OAuthError as error:
            return self._refused(request, error)
        if not security.csrf_valid(request, self._ctx.config, params.get(security.CSRF_FIELD)):
            self._audit(request, OAuthError("invalid_request", "CSRF token missing or wrong", 403))
            return self._error(request, "Form expired", FORGED, 403)
        user_code = params.get(USER_CODE, "")
        if CODE in params or HALF_LOGIN in params:
            return self._second_factor(request, user_code, params.get(HALF_LOGIN, ""), params.get(CODE, ""))
        if USERNAME in params or PASSWORD in params:
            return self._password(request, user_code, params.get(USERNAME, ""), params.get(PASSWORD, ""))
        browser = self._browser(request)
        if browser is None:
            return self._login_page(request, user_code, "Your session ended. Sign in again.", status=400)
        if CONSENT in params:
            return self._answer(request, browser, user_code, params[CONSENT])
        return self._confirm(request, browser, user_code)

    # -- steps ----------------------------------------------------------------------

    def _password(self, request: IRequest, user_code: str, username: str, password: str) -> Page:
        if not username or not password:
            return self._login_page(request, user_code, "Enter your user name and password.", status=400)
        decided = Deferred.fromCoroutine(browsers.password_step(
            self._ctx, username, password, self._ip(request), replacing=self._session_cookie(request)))

        def logged_in(login: browsers.BrowserLogin | browsers.HalfLogin) -> Page:
            if isinstance(login, browsers.HalfLogin):
                return self._second_factor_page(request, user_code, login.user, login.token)
            return self._logged_in(request, user_code, login)

        def refused(failure: Failure) -> Page:
            error = refusal(failure)
            self._audit(request, error)
            return self._login_page(request, user_code, login_problem(error, WRONG_PASSWORD),
                                    status=error.status)

        return decided.addCallback(self._store.commit).addCallbacks(logged_in, refused)

    def _second_factor(self, request: IRequest, user_code: str, token: str, code: str) -> Page:
        held = self._ctx.state.authz.halves.get(browsers.digest(token)) if token else None
        if held is None or not held.live(self._ctx.now()):
            return self._login_page(request, user_code, "That took too long. Sign in again.", status=400)
        try:
            decided = browsers.second_factor_step(self._ctx, token, code, self._ip(request),
                                                  replacing=self._session_cookie(request))
        except OAuthError as error:
            self._audit(request, error)
            return self._second_factor_page(request, user_code, held.user, token,
                                            login_problem(error, WRONG_CODE), error.status)
        return self._committed(request, decided, lambda login: self._logged_in(request, user_code, login))

    def _logged_in(self, request: IRequest, user_code: str, login: browsers.BrowserLogin) -> Page:
        config = self._ctx.config
        security.set_cookie(request, config, security.SESSION_COOKIE, login.secret,
                            max_age=config.browser_session_max_age)
        return self._entry(request, login.session, user_code)

    def _confirm(self, request: IRequest, browser: BrowserSession, user_code: str) -> Page:
        try:
            code = device.pending(self._ctx, browser, user_code, self._ip(request))
        except OAuthError as error:
            self._audit(request, error)
            return self._entry(request, browser, user_code, login_problem(error, WRONG_USER_CODE),
                               error.status, error.headers)
        return self._confirm_page(request, browser, code, user_code)

    def _answer(self, request: IRequest, browser: BrowserSession, user_code: str, answer: str) -> Page:
        if answer not in ("approve", "deny"):
            return self._error(request, "Invalid request", "The answer must be approve or deny.")
        try:
            decided = device.answer(self._ctx, browser, user_code, answer == "approve", self._ip(request))
        except OAuthError as error:
            self._audit(request, error)
            return self._entry(request, browser, user_code, login_problem(error, WRONG_USER_CODE),
                               error.status, error.headers)

        def done(code: DeviceCode) -> bytes:
            body = views.device_done_page(site=self._site, client_name=self._client_name(code),
                                          approved=answer == "approve")
            return self._show(request, body)

        return self._committed(request, decided, done)

    # -- rendering ----------------------------------------------------------------------

    def _client_name(self, code: DeviceCode) -> str:
        client = self._ctx.state.clients.get(code.client_id)
        return client.name if client is not None else CLIENT_NAME

    def _fields(self, request: IRequest, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [*extra, self._csrf_field(request)]

    def _code_page(self, request: IRequest, user_code: str) -> bytes:
        browser = self._browser(request)
        if browser is None:
            return self._login_page(request, user_code)
        return self._entry(request, browser, user_code)

    def _entry(self, request: IRequest, browser: BrowserSession, user_code: str, error: str = "",
               status: int = 200, headers: dict[str, str] | None = None) -> bytes:
        body = views.device_code_page(site=self._site, user=browser.user, fields=self._fields(request),
                                      user_code=user_code[:20], error=error)
        return self._show(request, body, status, headers=headers)

    def _login_page(self, request: IRequest, user_code: str, error: str = "", status: int = 200) -> bytes:
        fields = self._fields(request, (USER_CODE, user_code[:20])) if user_code else self._fields(request)
        body = views.login_page(site=self._site, client_name="connect a device", fields=fields,
                                error=error, action=device.VERIFICATION_PATH)
        return self._show(request, body, status)

    def _second_factor_page(self, request: IRequest, user_code: str, user: str, token: str,
                            error: str = "", status: int = 200) -> bytes:
        body = views.second_factor_page(
            site=self._site, client_name="connect a device", user=user, error=error,
            fields=self._fields(request, (USER_CODE, user_code[:20]), (HALF_LOGIN, token)),
            action=device.VERIFICATION_PATH)
        return self._show(request, body, status)

    def _confirm_page(self, request: IRequest, browser: BrowserSession, code: DeviceCode,
                      user_code: str) -> bytes:
        shown = device.shown(device.normalize(user_code) or "")
        body = views.device_confirm_page(
            site=self._site, client_name=self._client_name(code), user=browser.user, user_code=shown,
            scopes=tuple(code.scope.split()), fields=self._fields(request, (USER_CODE, shown)))
        return self._show(request, body)
