"""
The logout endpoint's pages (C{GET} and C{POST /api/v1/oauth/logout},
L{oauthd.protocol.logout}): a confirmation page when the request does not
show that the relying party took part in this browser's session, then a
redirect to the relying party's registered page, or a logged-out page.

The pages' machinery is the authorization pages' (L{security} headers,
cookies and CSRF, L{views} layout); like them, the confirmation page posts
the request's own parameters back and keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web.iweb import IRequest

from oauthd.protocol import logout
from oauthd.protocol.authorize import Answer, ShownError
from oauthd.protocol.context import Context
from oauthd.protocol.errors import OAuthError, deny
from oauthd.state.authz_records import BrowserSession
from oauthd.state.store import Store
from oauthd.web import parsing
from oauthd.web.pages import security, views
from oauthd.web.pages.base import Page, PageController, sentence
from oauthd.web.pages.flow import FORGED

CONFIRM = "logout"


class LogoutPages(PageController):
    """
    The logout endpoint's pages over C{ctx}, committing through C{store};
    C{audit} records a refusal.
    """

    def __init__(self, ctx: Context, store: Store, audit: Callable[[IRequest, OAuthError], None]) -> None:
        super().__init__(ctx, store, audit)

    def get(self, request: IRequest) -> Page:
        try:
            params = parsing.query(request)
        except OAuthError as error:
            return self._refused(request, error)
        return self._start(request, params, confirmed=False)

    def post(self, request: IRequest) -> Page:
        try:
            params = parsing.params(request, self._ctx.config.max_body)
        except OAuthError as error:
            return self._refused(request, error)
        confirmed = params.pop(CONFIRM, None) == "confirm"
        token = params.pop(security.CSRF_FIELD, None)
        if (confirmed or token is not None) and not security.csrf_valid(request, self._ctx.config, token):
            self._audit(request, OAuthError("invalid_request", "CSRF token missing or wrong", 403))
            return self._error(request, "Form expired", FORGED, 403)
        # Otherwise a logout request sent as a form: the same as its GET.
        return self._start(request, params, confirmed)

    def _start(self, request: IRequest, params: dict[str, str], confirmed: bool) -> Page:
        try:
            wanted = logout.parse(self._ctx, params)
        except ShownError as error:
            self._audit(request, deny(OAuthError("invalid_request", error.description), **error.context))
            return self._error(request, "This logout cannot be completed", sentence(error.description))
        session = self._browser(request)
        if session is None:
            # A cross-site POST comes without the cookie (SameSite=Lax): the
            # verified hint's sid still names the session to end.
            session = logout.session_named(self._ctx, wanted)
        if not confirmed and logout.needs_confirmation(wanted, session):
            assert session is not None
            return self._confirmation(request, wanted, session)
        decided = logout.logout(self._ctx, wanted, session, confirmed)
        return self._committed(request, decided, lambda answer: self._logged_out(request, answer))

    def _confirmation(self, request: IRequest, wanted: logout.LogoutRequest,
                      session: BrowserSession) -> bytes:
        fields = [*wanted.params, self._csrf_field(request)]
        client_name = wanted.client.name if wanted.client is not None else ""
        body = views.logout_page(site=self._site, client_name=client_name, user=session.user,
                                 fields=fields)
        source = security.redirect_source(wanted.redirect_uri) if wanted.redirect_uri else None
        return self._show(request, body, 200, () if source is None else (source,))

    def _logged_out(self, request: IRequest, answer: Answer | None) -> bytes:
        security.set_cookie(request, self._ctx.config, security.SESSION_COOKIE, "", max_age=0)
        if answer is None:
            return self._show(request, views.logged_out_page(site=self._site))
        request.setResponseCode(302)
        security.page_headers(request, security.content_security_policy())
        request.setHeader(b"Location", answer.location.encode("utf-8"))
        return b""
