"""
The sign-in pages over HTTP, in memory: a consent posted by hand cannot
skip C{prompt=login} or C{max_age}, the request's parameters travel bound
to the browser so an edited hidden field is refused, a login made for the
request satisfies both however long it took, and a new login in a browser
ends its previous session.
"""

from __future__ import annotations

import pyotp

from oauthd.protocol import browser
from tests.oauth_helpers import PASSWORD
from tests.page_case import AUTHORIZE, PageCase, Shown
from tests.test_pages import SESSION_COOKIE


class ReauthenticationTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        _, params = self.approve(self.log_in(self.authorize())).redirect
        assert "code" in params

    def consent_by_hand(self, shown: Shown, **changes: str) -> Shown:
        """
        Post C{shown}'s hidden fields, edited by C{changes} (an empty value
        drops a field), with consent=approve, as a person with the browser
        in hand could.
        """
        fields = {k: v for k, v in shown.page.form.fields.items() if k not in ("username", "password")}
        fields.update(changes, consent="approve")
        return self.browse("POST", AUTHORIZE, {k: v for k, v in fields.items() if v})

    def test_prompt_login_cannot_be_skipped_by_posting_the_consent(self) -> None:
        login = self.authorize(prompt="login")
        assert self.kind(login) == "login"
        again = self.consent_by_hand(login)
        assert self.kind(again) == "login", again.body[:300]
        # Logging in on that page is what answers it (the consent is on file).
        _, params = self.log_in(again).redirect
        assert self.redeem(params["code"]).code == 200

    def test_prompt_login_then_consent_in_the_same_second(self) -> None:
        consent = self.log_in(self.authorize(prompt="login", scope="openid photos albums"))
        assert self.kind(consent) == "consent"
        _, params = self.approve(consent).redirect
        assert self.redeem(params["code"]).code == 200

    def test_max_age_cannot_be_skipped_by_posting_the_consent(self) -> None:
        self.clock.advance(1000)
        login = self.authorize(max_age="300", scope="openid photos albums")
        assert self.kind(login) == "login"
        assert self.kind(self.consent_by_hand(login)) == "login"
        consent = self.log_in(login)
        assert self.kind(consent) == "consent"
        self.clock.advance(400)
        _, params = self.approve(consent).redirect
        assert "code" in params

    def test_max_age_zero_is_met_by_the_login_on_the_page(self) -> None:
        consent = self.log_in(self.authorize(max_age="0", scope="openid photos albums"))
        assert self.kind(consent) == "consent", consent.page.text
        self.clock.advance(5)
        _, params = self.approve(consent).redirect
        assert "code" in params

    def test_edited_hidden_fields_are_refused(self) -> None:
        login = self.authorize(prompt="login")
        for changes in ({"prompt": ""}, {"prompt": "consent"}, {"max_age": "999999"},
                        {"state": "other"}, {"bound": "0" * 64}, {"bound": ""}):
            shown = self.consent_by_hand(login, **changes)
            assert (shown.code, self.kind(shown)) == (403, "error"), changes
            assert "expired" in shown.page.text
        # A made-up claim that the login was made for this request is no login.
        assert self.kind(self.consent_by_hand(login, logged_in="0" * 64)) == "login"

    def test_a_login_for_another_request_does_not_count(self) -> None:
        """
        The consent page after a login vouches for that login with that
        request's parameters only.
        """
        consent = self.log_in(self.authorize(prompt="login", scope="openid photos albums", state="a"))
        other = self.authorize(prompt="login", scope="openid photos albums", state="b")
        vouched = consent.page.form.fields["logged_in"]
        assert self.kind(self.consent_by_hand(other, logged_in=vouched)) == "login"


class SessionRotationTests(PageCase):
    def test_a_new_login_in_the_same_browser_ends_the_previous_session(self) -> None:
        self.approve(self.log_in(self.authorize()))
        old = self.jar[SESSION_COOKIE]
        self.log_in(self.authorize(prompt="login"))
        assert self.jar[SESSION_COOKIE] != old
        assert browser.browser_session(self.server.ctx, old) is None
        assert len(self.server.ctx.state.authz.browsers) == 1

    def test_so_does_a_login_with_a_second_factor(self) -> None:
        self.add_user("bob", PASSWORD)
        secret = pyotp.parse_uri(self.enable_second_factor("bob").uri).secret
        self.approve(self.log_in(self.authorize()))
        old = self.jar[SESSION_COOKIE]
        code_page = self.log_in(self.authorize(prompt="login"), "bob")
        assert browser.browser_session(self.server.ctx, old) is not None
        self.submit(code_page, otp=pyotp.TOTP(secret).at(int(self.clock.seconds())))
        assert self.jar[SESSION_COOKIE] != old
        assert browser.browser_session(self.server.ctx, old) is None
        assert [s.user for s in self.server.ctx.state.authz.browsers.values()] == ["bob"]
