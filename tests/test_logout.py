"""
RP-initiated logout (C{/api/v1/oauth/logout}, L{oauthd.protocol.logout}):
the browser plays through the pages in memory; the relying party's
C{id_token_hint} is signed with the server's own keys
(L{oauthd.protocol.signing}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest_twisted
from joserfc import jwt
from joserfc.jwk import RSAKey

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from oauthd.protocol import signing
from oauthd.protocol.admin.clients import update_client
from oauthd.state.authz_records import BrowserSession
from oauthd.web.pages.security import SESSION_COOKIE
from tests.oauth_helpers import START
from tests.page_case import PageCase, Shown
from tests.test_ctl import Live

LOGOUT = "/api/v1/oauth/logout"
GOODBYE = "https://gallery.example/goodbye"


class LogoutTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        self.add_client("Other", type="public", grant_types=("authorization_code",),
                        redirect_uris=("https://other.example/cb",),
                        post_logout_redirect_uris=("https://other.example/bye",))
        self.successResultOf(self.server.store.commit(
            update_client(self.server.ctx, self.gallery.id, post_logout_redirect_uris=(GOODBYE,))))
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    # -- helpers ----------------------------------------------------------------------

    def signed_in(self) -> BrowserSession:
        """
        Log the browser in through the authorization pages; its session.
        """
        answer = self.approve(self.log_in(self.authorize()))
        assert answer.code == 302
        (session,) = self.server.state.authz.browsers.values()
        return session

    def hint(self, sid: str, **claims: Any) -> str:
        ctx = self.server.ctx
        now = int(ctx.now())
        return signing.sign(ctx, {"iss": self.config.issuer, "sub": "alice", "aud": self.gallery.id,
                                  "iat": now, "exp": now + 3600, "sid": sid, **claims})

    def logout(self, method: str = "GET", **params: str) -> Shown:
        if method == "POST":
            return self.browse("POST", LOGOUT, params)
        return self.browse("GET", LOGOUT + ("?" + urlencode(params) if params else ""))

    def confirm(self, shown: Shown) -> Shown:
        form = shown.page.form
        assert (form.action, form.method) == (LOGOUT, "post") and ("logout", "confirm") in form.buttons
        return self.browse("POST", LOGOUT, form.filled(("logout", "confirm")))

    def live(self, session: BrowserSession) -> bool:
        return session.key in self.server.state.authz.browsers

    def refusals(self) -> list[tuple[str, str]]:
        return [(e["error"], e["reason"]) for e in self.events
                if e.get("log_namespace") == "oauthd.audit" and e.get("audit_event") == "logout.refuse"]

    def assert_logged_out_page(self, shown: Shown) -> None:
        assert shown.code == 200 and "You are logged out" in shown.page.text, shown.body[:400]
        assert shown.header("location") is None and SESSION_COOKIE not in self.jar

    # -- discovery --------------------------------------------------------------------

    def test_discovery_lists_the_end_session_endpoint(self) -> None:
        doc = self.browse("GET", "/.well-known/openid-configuration")
        assert '"end_session_endpoint":"' + self.config.issuer + LOGOUT + '"' in doc.body.decode()

    # -- with a hint -----------------------------------------------------------------

    def test_a_hint_for_this_session_logs_out_at_once_and_redirects_with_state(self) -> None:
        session = self.signed_in()
        # An expired hint still says who asks (RP-Initiated Logout 1.0, section 2).
        self.clock.advance(7200)
        shown = self.logout(id_token_hint=self.hint(session.handle, exp=START + 10),
                            post_logout_redirect_uri=GOODBYE, state="st 1", ui_locales="de en")
        assert shown.redirect == (GOODBYE, {"state": "st 1"})
        assert not self.live(session) and SESSION_COOKIE not in self.jar
        assert self.kind(self.authorize()) == "login"
        (event,) = [e for e in self.events if e.get("audit_event") == "browser.logout"]
        assert (event["user"], event["session"], event["client"]) == ("alice", session.handle, self.gallery.id)

    def test_a_cross_site_post_without_the_cookie_ends_the_session_its_hint_names(self) -> None:
        """
        A relying party's logout POST from its own site comes without the
        session cookie (SameSite=Lax): the verified hint's sid still names
        the session, which ends, so the browser is not silently signed in
        again at the next authorization request.
        """
        session = self.signed_in()
        cookies = dict(self.jar)
        self.jar.clear()
        shown = self.logout("POST", id_token_hint=self.hint(session.handle),
                            post_logout_redirect_uri=GOODBYE, state="s")
        assert shown.redirect == (GOODBYE, {"state": "s"}) and not self.live(session)
        self.jar.update(cookies)
        assert self.kind(self.authorize()) == "login"

    def test_the_id_token_of_this_login_ends_its_session(self) -> None:
        answer = self.approve(self.log_in(self.authorize(nonce="n-1")))
        (session,) = self.server.state.authz.browsers.values()
        reply = self.redeem(answer.redirect[1]["code"])
        assert reply.code == 200, reply.body
        shown = self.logout(id_token_hint=reply.body["id_token"], post_logout_redirect_uri=GOODBYE)
        assert shown.redirect == (GOODBYE, {}) and not self.live(session)

    def test_a_posted_hint_without_a_redirect_shows_the_logged_out_page(self) -> None:
        session = self.signed_in()
        self.assert_logged_out_page(self.logout("POST", id_token_hint=self.hint(session.handle)))
        assert not self.live(session)

    def test_a_hint_for_another_session_asks_first(self) -> None:
        session = self.signed_in()
        asked = self.logout(id_token_hint=self.hint("br0000000000"), post_logout_redirect_uri=GOODBYE,
                            state="s")
        assert asked.code == 200 and "Gallery" in asked.page.text and self.live(session)
        assert "form-action 'self' https://gallery.example;" in (asked.header("content-security-policy") or "")
        assert self.confirm(asked).redirect == (GOODBYE, {"state": "s"})
        assert not self.live(session)

    # -- without a hint --------------------------------------------------------------

    def test_without_a_hint_the_user_confirms(self) -> None:
        session = self.signed_in()
        asked = self.logout()
        assert asked.code == 200 and "Log out?" in asked.page.text and "alice" in asked.page.text
        assert self.live(session), "nothing ends before the user confirms"
        self.assert_logged_out_page(self.confirm(asked))
        assert not self.live(session)

    def test_without_a_hint_a_client_id_lets_it_redirect(self) -> None:
        session = self.signed_in()
        asked = self.logout(client_id=self.gallery.id, post_logout_redirect_uri=GOODBYE, state="x")
        assert self.live(session)
        assert self.confirm(asked).redirect == (GOODBYE, {"state": "x"})
        assert not self.live(session)

    def test_a_browser_with_no_session_has_nothing_to_confirm(self) -> None:
        self.assert_logged_out_page(self.logout())
        assert self.logout(client_id=self.gallery.id, post_logout_redirect_uri=GOODBYE).redirect == (GOODBYE, {})

    def test_a_confirmation_without_the_csrf_token_changes_nothing(self) -> None:
        session = self.signed_in()
        asked = self.logout()
        fields = asked.page.form.filled(("logout", "confirm"))
        del fields["csrf"]
        forged = self.browse("POST", LOGOUT, fields)
        assert forged.code == 403 and self.live(session)
        assert self.refusals() == [("invalid_request", "CSRF token missing or wrong")]

    # -- refused ----------------------------------------------------------------------

    def test_unregistered_redirects_are_refused_and_never_followed(self) -> None:
        session = self.signed_in()
        near = [GOODBYE + "x", GOODBYE + "/", GOODBYE + "?next=1", GOODBYE[:-1], GOODBYE.upper()]
        for uri in near:
            shown = self.logout(client_id=self.gallery.id, post_logout_redirect_uri=uri)
            assert shown.code == 400 and shown.header("location") is None, uri
        for params in [
            {"id_token_hint": self.hint(session.handle), "post_logout_redirect_uri": "https://evil.example/"},
            # Registered, but for another client.
            {"client_id": self.gallery.id, "post_logout_redirect_uri": "https://other.example/bye"},
            # Nothing to check it against.
            {"post_logout_redirect_uri": GOODBYE},
        ]:
            shown = self.logout(**params)
            assert shown.code == 400 and shown.header("location") is None, params
            assert "This logout cannot be completed" in shown.page.text
        assert self.live(session)
        assert [reason for _, reason in self.refusals()][len(near):] == [
            "the post_logout_redirect_uri is not registered for this client",
            "the post_logout_redirect_uri is not registered for this client",
            "a post_logout_redirect_uri needs the client_id or an id_token_hint",
        ]

    def test_hints_this_server_did_not_issue_are_refused(self) -> None:
        session = self.signed_in()
        stranger = RSAKey.generate_key(2048)
        forged = jwt.encode({"alg": "RS256"}, {"iss": self.config.issuer, "aud": self.gallery.id,
                                               "sid": session.handle}, stranger)
        for hint in [forged, "not.a.token", self.hint(session.handle, iss="https://elsewhere.example")]:
            shown = self.logout(id_token_hint=hint)
            assert shown.code == 400 and "This logout cannot be completed" in shown.page.text
        shown = self.logout(id_token_hint=self.hint(session.handle), client_id="cnobody")
        assert shown.code == 400
        assert self.live(session)
        assert self.refusals()[-1] == ("invalid_request", "the client is not the one the ID token was issued to")

    def test_bad_input_gets_a_page_not_a_500(self) -> None:
        session = self.signed_in()
        for shown in [
            self.browse("GET", LOGOUT + "?state=a&state=b"),
            self.browse("GET", LOGOUT + "?client_id=%FF"),
            self.logout(client_id="cnobody"),
            self.logout(state="x" * 9000),
            self.browse("POST", LOGOUT, body=b"\xff\xfe", headers={"Content-Type": "text/plain"}),
        ]:
            assert 400 <= shown.code < 500 and shown.header("content-type") == "text/html; charset=utf-8"
        assert self.live(session)


@pytest_twisted.ensureDeferred
async def test_oauthctl_sets_post_logout_redirect_uris(tmp_path: Path) -> None:
    live = Live(tmp_path)
    try:
        added = (await live.ok("--json", "clients", "add", "--name", "rp", "--public", "--grant",
                               "authorization_code", "--redirect-uri", "https://rp.example/cb",
                               "--post-logout-redirect-uri", "https://rp.example/bye",
                               "--post-logout-redirect-uri", "https://rp.example/later")).json()
        client = live.server.state.clients[added["id"]]
        assert client.post_logout_redirect_uris == ("https://rp.example/bye", "https://rp.example/later")
        assert "Logout Redirect URIs" in (await live.ok("clients", "show", added["id"])).out
        refused = await live.ctl("clients", "mod", added["id"], "--post-logout-redirect-uri", "http://rp.example/")
        assert refused.code == 1 and "post-logout redirect URI 'http://rp.example/' must use https" in refused.err
        await live.ok("clients", "mod", added["id"], "--no-post-logout-redirect-uris")
        assert live.server.state.clients[added["id"]].post_logout_redirect_uris == ()
    finally:
        await live.stop()
