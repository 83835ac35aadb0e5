"""
The authorization endpoint's pages over HTTP, in memory: the whole flow
(login, second factor, consent, redirect, token), CSRF, form_post, the
error page, replayed codes, expired sessions, the headers of every page,
the cookies, and hostile input.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pyotp

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from oauthd.protocol import browser
from oauthd.web.pages import security
from tests.oauth_helpers import PASSWORD
from tests.page_case import AUTHORIZE, REDIRECT, VERIFIER, PageCase, Shown
from tests.page_helpers import cookie_attributes

SESSION_COOKIE = "__Host-oauthd_session"
CSRF_COOKIE = "__Host-oauthd_csrf"


class FlowTests(PageCase):
    def test_password_login_consent_code_and_tokens(self) -> None:
        login = self.authorize()
        assert (login.code, self.kind(login)) == (200, "login")
        assert "Gallery" in login.page.text
        consent = self.log_in(login)
        assert self.kind(consent) == "consent", consent.page.text
        assert "Know who you are" in consent.page.text and "photos" in consent.page.text
        to, params = self.approve(consent).redirect
        assert to == REDIRECT
        assert set(params) == {"code", "state", "iss"}
        assert (params["state"], params["iss"]) == ("s-1", self.config.issuer)
        tokens = self.redeem(params["code"])
        assert tokens.code == 200, tokens
        assert tokens.body["token_type"].lower() == "bearer"
        assert tokens.body["access_token"] and tokens.body["refresh_token"]
        assert tokens.body["scope"] == "openid photos"

    def test_second_factor_login(self) -> None:
        self.add_user("bob", PASSWORD)
        secret = pyotp.parse_uri(self.enable_second_factor("bob").uri).secret
        code_page = self.log_in(self.authorize(), "bob")
        assert self.kind(code_page) == "second-factor", code_page.page.text
        assert SESSION_COOKIE not in self.jar
        consent = self.submit(code_page, otp=pyotp.TOTP(secret).at(int(self.clock.seconds())))
        assert self.kind(consent) == "consent", consent.page.text
        _, params = self.approve(consent).redirect
        assert self.redeem(params["code"]).code == 200

    def test_consent_is_remembered_for_the_same_scopes_or_fewer(self) -> None:
        self.approve(self.log_in(self.authorize()))
        again = self.authorize()
        assert self.kind(again) == "redirect"
        fewer = self.authorize(scope="photos")
        assert self.kind(fewer) == "redirect"
        more = self.authorize(scope="photos albums")
        assert self.kind(more) == "consent"

    def test_an_authorization_request_sent_as_a_form(self) -> None:
        query = self.authorize().page.form.fields
        del query["csrf"]
        login = self.browse("POST", AUTHORIZE, query)
        assert (login.code, self.kind(login)) == (200, "login")
        _, params = self.approve(self.log_in(login)).redirect
        assert self.redeem(params["code"]).code == 200

    def test_denied(self) -> None:
        denied = self.submit(self.log_in(self.authorize()), ("consent", "deny"))
        _, params = denied.redirect
        assert (params["error"], params["state"], params["iss"]) == (
            "access_denied", "s-1", self.config.issuer)
        assert self.kind(self.authorize()) == "consent"

    def test_wrong_password_shows_the_login_page_again(self) -> None:
        again = self.log_in(self.authorize(), password="wrong")
        assert (again.code, self.kind(again)) == (400, "login")
        assert "not right" in again.page.text
        assert again.page.form.fields["username"] == "alice"
        assert self.kind(self.log_in(again)) == "consent"

    def test_password_guessing_is_limited(self) -> None:
        login = self.authorize()
        for _ in range(10):
            login = self.log_in(login, password="guess")
            assert login.code == 400
        limited = self.log_in(login)
        assert (limited.code, self.kind(limited)) == (429, "login")
        assert "Too many attempts" in limited.page.text
        assert limited.header("retry-after")
        assert SESSION_COOKIE not in self.jar

    def test_second_factor_guessing_is_limited(self) -> None:
        self.add_user("bob", PASSWORD)
        totp = pyotp.parse_uri(self.enable_second_factor("bob").uri)
        right_code = totp.at(int(self.clock.seconds()))
        wrong_code = "000000" if right_code != "000000" else "111111"
        shown = self.submit(self.log_in(self.authorize(), "bob"), otp=wrong_code)
        for _ in range(10):
            if shown.code != 400:
                break
            shown = self.submit(shown, otp=wrong_code)
        assert (shown.code, self.kind(shown)) == (429, "second-factor")
        assert shown.header("retry-after")
        right = self.submit(shown, otp=right_code)
        assert right.code == 429 and SESSION_COOKIE not in self.jar

    def test_form_post(self) -> None:
        posted = self.approve(self.log_in(self.authorize(response_mode="form_post")))
        assert (posted.code, self.kind(posted)) == (200, "form-post")
        form = posted.page.form
        assert (form.action, form.method) == (REDIRECT, "post")
        assert set(form.fields) == {"code", "state", "iss"}
        assert form.buttons, "the form works without script"
        csp = posted.header("content-security-policy") or ""
        assert "script-src 'self'" in csp and "form-action 'self' https://gallery.example;" in csp
        assert [s["src"] for s in posted.page.scripts] == ["/api/v1/oauth/static/form-post.js"]
        script = self.browse("GET", "/api/v1/oauth/static/form-post.js")
        assert script.code == 200 and script.header("x-content-type-options") == "nosniff"
        assert self.redeem(form.fields["code"]).code == 200


class CsrfTests(PageCase):
    def test_missing_or_wrong_token_is_refused_and_changes_nothing(self) -> None:
        login = self.authorize()
        fields = login.page.form.filled(username="alice", password=PASSWORD)
        before = self.journal_size()
        for token in (None, "", "0" * 64, security.csrf_token("x" * 64)):
            sent = {k: v for k, v in fields.items() if k != "csrf"}
            if token is not None:
                sent["csrf"] = token
            refused = self.browse("POST", AUTHORIZE, sent)
            assert (refused.code, self.kind(refused)) == (403, "error"), token
            assert "nothing was done" in refused.page.text
        assert self.journal_size() == before
        assert SESSION_COOKIE not in self.jar

    def test_a_token_that_is_not_ascii_is_refused(self) -> None:
        fields = self.authorize().page.form.filled(username="alice", password=PASSWORD)
        refused = self.browse("POST", AUTHORIZE, {**fields, "csrf": "\u00e9" * 64})
        assert (refused.code, self.kind(refused)) == (403, "error")

    def test_token_of_another_browser_is_refused(self) -> None:
        mine = self.authorize()
        self.jar.clear()
        theirs = self.authorize()
        assert mine.page.form.fields["csrf"] != theirs.page.form.fields["csrf"]
        refused = self.browse("POST", AUTHORIZE, mine.page.form.filled(username="alice", password=PASSWORD))
        assert refused.code == 403

    def test_consent_without_the_token_grants_nothing(self) -> None:
        consent = self.log_in(self.authorize())
        before = self.journal_size()
        fields = consent.page.form.filled(("consent", "approve"))
        del fields["csrf"]
        assert self.browse("POST", AUTHORIZE, fields).code == 403
        assert self.journal_size() == before


class ErrorPageTests(PageCase):
    def assert_shown(self, shown: Shown, words: str) -> None:
        assert (shown.code, self.kind(shown)) == (400, "error"), shown.body[:300]
        assert shown.header("location") is None
        assert words in shown.page.text, shown.page.text

    def test_unknown_client_and_unregistered_redirect_are_never_redirected(self) -> None:
        self.assert_shown(self.authorize(client_id="nobody"), "unknown")
        self.assert_shown(self.authorize(redirect_uri="https://evil.example/cb"), "not registered")
        self.assert_shown(self.authorize(client_id=""), "client_id")

    def test_other_errors_go_back_to_the_client(self) -> None:
        _, params = self.authorize(code_challenge_method="plain").redirect
        assert (params["error"], params["state"]) == ("invalid_request", "s-1")


class SecondFactorPageTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        self.add_user("bob", PASSWORD)
        self.enrollment = self.enable_second_factor("bob")
        self.totp = pyotp.parse_uri(self.enrollment.uri)

    def code_page(self) -> Shown:
        self.jar.clear()
        shown = self.log_in(self.authorize(), "bob")
        assert self.kind(shown) == "second-factor"
        return shown

    def test_a_replayed_code_is_refused(self) -> None:
        code = self.totp.at(int(self.clock.seconds()))
        assert self.kind(self.submit(self.code_page(), otp=code)) == "consent"
        replayed = self.submit(self.code_page(), otp=code)
        assert (replayed.code, self.kind(replayed)) == (400, "second-factor")
        assert "used already" in replayed.page.text
        assert SESSION_COOKIE not in self.jar

    def test_a_recovery_code_works_once(self) -> None:
        recovery = self.enrollment.recovery_codes[0]
        assert self.kind(self.submit(self.code_page(), otp=recovery)) == "consent"
        again = self.submit(self.code_page(), otp=recovery)
        assert (again.code, self.kind(again)) == (400, "second-factor")
        assert SESSION_COOKIE not in self.jar

    def test_a_stale_half_login_asks_for_the_password_again(self) -> None:
        shown = self.code_page()
        self.clock.advance(browser.HALF_LOGIN_TTL + 1)
        code = self.totp.at(int(self.clock.seconds()))
        again = self.submit(shown, otp=code)
        assert self.kind(again) == "login", again.page.text
        assert "took too long" in again.page.text


class BrowserSessionTests(PageCase):
    def test_a_session_skips_the_login_page(self) -> None:
        self.approve(self.log_in(self.authorize()))
        assert self.kind(self.authorize(scope="openid photos albums")) == "consent"

    def test_an_idle_session_expires(self) -> None:
        self.approve(self.log_in(self.authorize()))
        self.clock.advance(self.config.browser_session_idle + 1)
        assert self.kind(self.authorize()) == "login"

    def test_an_old_session_expires_even_if_used(self) -> None:
        self.approve(self.log_in(self.authorize()))
        days = self.config.browser_session_max_age // 86400
        for _ in range(days - 1):
            self.clock.advance(86400)
            assert self.kind(self.authorize()) == "redirect"
        self.clock.advance(86400)
        assert self.kind(self.authorize()) == "login"

    def test_a_session_that_expires_on_the_consent_page(self) -> None:
        consent = self.log_in(self.authorize())
        self.clock.advance(self.config.browser_session_idle + 1)
        again = self.approve(consent)
        assert self.kind(again) == "login"
        assert "Sign in again" in again.page.text


class HeaderTests(PageCase):
    def every_page(self) -> dict[str, Shown]:
        self.add_user("bob", PASSWORD)
        self.enable_second_factor("bob")
        pages = {"login": self.authorize(), "error": self.authorize(client_id="nobody")}
        pages["second-factor"] = self.log_in(pages["login"], "bob")
        self.jar.clear()
        pages["consent"] = self.log_in(self.authorize())
        pages["redirect"] = self.approve(pages["consent"])
        pages["form-post"] = self.authorize(response_mode="form_post")
        pages["forged"] = self.browse("POST", AUTHORIZE, {"client_id": self.gallery.id, "csrf": "x"})
        return pages

    def test_headers_on_every_page(self) -> None:
        for name, shown in self.every_page().items():
            csp = shown.header("content-security-policy") or ""
            directives = dict(d.strip().partition(" ")[::2] for d in csp.split(";"))
            assert directives["default-src"] == "'none'", name
            assert directives["frame-ancestors"] == "'none'", name
            assert directives["base-uri"] == "'none'", name
            assert directives["style-src"] == "'self'", name
            if name in ("login", "second-factor", "consent", "form-post"):
                assert directives["form-action"] == "'self' https://gallery.example", name
            else:
                assert directives["form-action"] == "'self'", name
            assert directives.get("script-src") == ("'self'" if name == "form-post" else None), name
            assert shown.header("x-frame-options") == "DENY", name
            assert shown.header("x-content-type-options") == "nosniff", name
            assert shown.header("referrer-policy") == "no-referrer", name
            assert shown.header("cache-control") == "no-store", name
            if name != "redirect":
                assert shown.header("content-type") == "text/html; charset=utf-8", name

    def test_a_private_use_scheme_is_named_in_form_action(self) -> None:
        app, _ = self.add_client(
            "Phone", type="public", grant_types=("authorization_code",),
            redirect_uris=("com.example.phone:/oauth",), scope="photos")
        shown = self.authorize(client_id=app.id, redirect_uri="com.example.phone:/oauth", scope="")
        assert self.kind(shown) == "login"
        assert "form-action 'self' com.example.phone:;" in (shown.header("content-security-policy") or "")


class CookieTests(PageCase):
    def cookies(self, shown: Shown) -> dict[str, dict[str, str]]:
        return {name: attributes for name, _, attributes in
                map(cookie_attributes, shown.headers.get("set-cookie", []))}

    def test_https_issuer(self) -> None:
        login = self.authorize()
        consent = self.log_in(login)
        cookies = {**self.cookies(login), **self.cookies(consent)}
        assert set(cookies) == {CSRF_COOKIE, SESSION_COOKIE}
        for attributes in cookies.values():
            assert {"path": "/", "secure": "", "httponly": "", "samesite": "Lax"}.items() <= attributes.items()
            assert "domain" not in attributes
        assert cookies[SESSION_COOKIE]["max-age"] == str(self.config.browser_session_max_age)


class PlainHttpCookieTests(PageCase):
    config_values = {"issuer": "http://127.0.0.1:9478"}

    def test_http_issuer(self) -> None:
        login = self.authorize()
        self.log_in(login)
        assert set(self.jar) == {"oauthd_csrf", "oauthd_session"}
        for header in login.headers["set-cookie"]:
            _, _, attributes = cookie_attributes(header)
            assert "secure" not in attributes and attributes["samesite"] == "Lax"
            assert "httponly" in attributes


class HostileInputTests(PageCase):
    def assert_refused(self, shown: Shown, code: int, words: str) -> None:
        assert (shown.code, self.kind(shown)) == (code, "error"), shown.body[:400]
        assert words in shown.page.text, shown.page.text
        assert shown.header("content-type") == "text/html; charset=utf-8"

    def test_query_strings(self) -> None:
        base = f"{AUTHORIZE}?response_type=code&client_id={self.gallery.id}"
        self.assert_refused(self.browse("GET", base + "&client_id=x"), 400, "client_id is repeated")
        self.assert_refused(self.browse("GET", base + "&state=%ff"), 400, "query string is not valid UTF-8")
        self.assert_refused(self.browse("GET", base + "&state=" + "a" * 5000), 400, "state is too long")
        self.assert_refused(self.browse("GET", base + "&x=1" * 70), 400, "more than 64 parameters")

    def test_form_bodies(self) -> None:
        login = self.authorize()
        fields = login.page.form.filled(username="alice", password=PASSWORD)
        before = self.journal_size()
        body = urlencode(fields).encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        self.assert_refused(self.browse("POST", AUTHORIZE, body=body + b"&username=bob", headers=form),
                            400, "username is repeated")
        self.assert_refused(self.browse("POST", AUTHORIZE, body=body + b"&x=%c3%28", headers=form),
                            400, "not valid UTF-8")
        self.assert_refused(self.browse("POST", AUTHORIZE, body=body + b"&x=\xff", headers=form),
                            400, "not valid UTF-8")
        self.assert_refused(self.browse("POST", AUTHORIZE, body=b"a=" + b"b" * 70000, headers=form),
                            413, "larger than")
        self.assert_refused(self.browse("POST", AUTHORIZE, body=body, headers={"Content-Type": "text/plain"}),
                            400, "x-www-form-urlencoded")
        self.assert_refused(self.browse("POST", AUTHORIZE, {**fields, "password": "p" * 5000}),
                            400, "password is too long")
        assert self.journal_size() == before

    def test_hostile_values_are_shown_as_text(self) -> None:
        hostile = '"><script>alert(1)</script>'
        login = self.authorize(state=hostile, login_hint=hostile)
        assert b"<script>alert" not in login.body
        assert login.page.form.fields["state"] == hostile
        again = self.log_in(login, username=hostile)
        assert again.code == 400 and b"<script>alert" not in again.body

    def test_a_bad_consent_answer(self) -> None:
        consent = self.log_in(self.authorize())
        shown = self.submit(consent, ("consent", "maybe"))
        self.assert_refused(shown, 400, "approve or deny")

    def test_bad_cookies_are_ignored(self) -> None:
        self.jar[SESSION_COOKIE] = "nonsense;"
        self.jar[CSRF_COOKIE] = "\u00e9" * 20
        login = self.authorize()
        assert self.kind(login) == "login"
        assert self.kind(self.log_in(login)) == "consent"


class AuditTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_namespace") == "oauthd.audit"
                and e.get("audit_event") == "authorize.refuse"]

    def test_refusals_on_the_pages_are_audited_once_without_secrets(self) -> None:
        login = self.authorize()
        self.log_in(login, password="not the password")
        self.browse("POST", AUTHORIZE, {"client_id": self.gallery.id, "csrf": "forged"})
        self.authorize(client_id="nobody")
        reasons = [(e["error"], e["reason"]) for e in self.refusals()]
        assert reasons == [
            ("invalid_grant", "wrong password or unknown user"),
            ("invalid_request", "CSRF token missing or wrong"),
            ("invalid_request", "unknown client"),
        ], reasons
        assert not any("not the password" in str(e) for e in self.events)


def test_an_oversized_form_over_real_framing_gets_a_page() -> None:
    """
    Through the real site (which caps bodies while they arrive), a form
    posted to the pages over max_body is answered with the error page, 413,
    not the API's JSON.
    """
    from oauthd.web.api import OAuthHTTP
    from oauthd.web.site import OAuthSite
    from tests.helpers import make_config, make_server
    from tests.test_token_hostile import _raw_exchange

    config = make_config(max_body=1024)
    server = make_server(config)
    site = OAuthSite(OAuthHTTP(server.ctx, server.store).resource(), config.max_body)
    body = b"username=" + b"a" * 5000
    response = _raw_exchange(site, b"POST /api/v1/oauth/authorize HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    head, _, page = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), response[:300]
    assert b"content-type: text/html; charset=utf-8" in head.lower()
    assert b"content-security-policy: default-src 'none'" in head.lower()
    assert b"larger than 1024 bytes" in page


class FuzzTests(PageCase):
    """
    Whatever a browser posts, with or without the right CSRF token, the
    pages answer with a page or a redirect, never a server error.
    """

    NAMES = ["client_id", "redirect_uri", "response_type", "scope", "state", "response_mode",
             "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "nonce",
             "username", "password", "otp", "login", "consent", "csrf", "request", "x"]

    def test_random_forms_never_fail(self) -> None:
        self.fuzz(self.authorize().page.form.fields)

    def test_random_forms_in_a_session_and_a_half_login_never_fail(self) -> None:
        self.add_user("bob", PASSWORD)
        self.enable_second_factor("bob")
        half = self.log_in(self.authorize(), "bob").page.form.fields
        self.fuzz(self.log_in(self.authorize()).page.form.fields | {"login": half["login"]})

    def fuzz(self, valid: dict[str, str]) -> None:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        names = st.sampled_from(self.NAMES)
        values = st.one_of(st.sampled_from(list(valid.values()) + ["approve", "deny", "alice", PASSWORD]),
                           st.text(max_size=50))

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.dictionaries(names, values, max_size=10), st.booleans())
        def check(form: dict[str, str], keep_token: bool) -> None:
            if keep_token:
                form = {**form, "csrf": valid["csrf"]}
            for shown in (self.browse("POST", AUTHORIZE, form),
                          self.browse("GET", AUTHORIZE + "?" + urlencode(form))):
                assert shown.code in (200, 302, 400, 403, 413, 429), (form, shown.code, shown.body[:300])
                if shown.code != 302:
                    assert shown.header("content-type") == "text/html; charset=utf-8", form

        check()
