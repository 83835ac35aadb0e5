"""
What the controllers of the HTML pages (authorization, device verification,
logout) share: the browser session they read, the CSRF field of their
forms, how a page is sent with its headers, the error page, and committing
a decision with an error page if it cannot be made durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from oauthd.protocol import browser as browsers, errors
from oauthd.protocol.context import Context
from oauthd.protocol.errors import OAuthError
from oauthd.state.authz_records import BrowserSession
from oauthd.state.decision import Decision
from oauthd.state.store import NotDurable, Store
from oauthd.web.pages import security, views

Page = bytes | Deferred[bytes]


class PageController:
    """
    A set of pages over C{ctx}, committing through C{store}; C{audit}
    records a refusal (every refusal is audited once, as the API's are).
    """

    def __init__(self, ctx: Context, store: Store, audit: Callable[[IRequest, OAuthError], None]) -> None:
        self._ctx = ctx
        self._store = store
        self._audit = audit
        self._site = urlsplit(ctx.config.issuer).hostname or "oauthd"

    def _session_cookie(self, request: IRequest) -> str:
        return security.get_cookie(request, self._ctx.config, security.SESSION_COOKIE) or ""

    def _browser(self, request: IRequest) -> BrowserSession | None:
        """
        The live browser session the request's cookie names, if any.
        """
        return browsers.browser_session(self._ctx, self._session_cookie(request))

    def _csrf_field(self, request: IRequest, cookie: str = "") -> tuple[str, str]:
        """
        A form's CSRF field, for C{cookie} (the browser's CSRF cookie, set
        now if the browser has none and the caller has not just set one).
        """
        cookie = cookie or security.csrf_cookie(request, self._ctx.config, self._ctx.random_bytes)
        return security.CSRF_FIELD, security.csrf_token(cookie)

    def _show(self, request: IRequest, body: bytes, status: int = 200,
              targets: tuple[str, ...] = (), script: bool = False,
              headers: dict[str, str] | None = None) -> bytes:
        """
        C{body} with the pages' headers (C{targets}: where its form may end,
        for C{form-action}) and a refusal's C{Retry-After}, if it has one.
        """
        request.setResponseCode(status)
        security.page_headers(request, security.content_security_policy(targets, script))
        for name, value in (headers or {}).items():
            if name.lower() == "retry-after":
                request.setHeader(b"Retry-After", value.encode("ascii"))
        return body

    def _refused(self, request: IRequest, error: OAuthError) -> bytes:
        self._audit(request, error)
        return self._error(request, "Invalid request", sentence(error.description), error.status)

    def _error(self, request: IRequest, title: str, description: str, status: int = 400,
               headers: dict[str, str] | None = None) -> bytes:
        body = views.error_page(site=self._site, title=title, description=description)
        return self._show(request, body, status, headers=headers)

    def _committed(self, request: IRequest, decided: Decision[Any],
                   then: Callable[[Any], Page]) -> Deferred[bytes]:
        """
        C{then} the decision's answer, once it is durable; an error page if
        it cannot be made so.
        """
        def failed(failure: Failure) -> Page:
            error = refusal(failure)
            self._audit(request, error)
            return self._error(request, "Please try again", sentence(error.description), error.status,
                               error.headers)

        return self._store.commit(decided).addCallbacks(then, failed)


def refusal(failure: Failure) -> OAuthError:
    """
    The refusal a failure stands for; anything else is passed on.
    """
    if failure.check(NotDurable):
        return errors.temporarily_unavailable("the change could not be recorded; try again in a moment")
    failure.trap(OAuthError)
    error = failure.value
    assert isinstance(error, OAuthError)
    return error


def sentence(text: str) -> str:
    """
    A protocol description as a sentence on a page.
    """
    text = text.strip()
    if not text:
        return "Something went wrong."
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
