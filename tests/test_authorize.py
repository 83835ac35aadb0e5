"""
The authorization endpoint's protocol layer (issue 14): parsing a request
(every error shown or redirected as RFC 6749 section 4.1.2.1 says), the
steps a browser goes through (login, consent, prompt and max_age), browser
sessions (lifetimes on an injected clock, ended by account changes), the
browser login with a second factor, and consents over the control socket.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pyotp
import pytest_twisted

from twisted.internet.defer import Deferred

from oauthd.control import wire
from oauthd.protocol import authorize, browser
from oauthd.protocol.admin.second_factor import enable
from oauthd.protocol.authorize import Answer, NeedsConsent, NeedsLogin
from oauthd.protocol.browser import BrowserLogin, HalfLogin
from oauthd.protocol.errors import OAuthError
from oauthd.protocol.second_factor import TOTP_DIGITS
from oauthd.state.decision import Decision
from oauthd.state.entities import TOTP_PERIOD
from oauthd.state.records import SecondFactorEnabled
from tests.authz_helpers import CHALLENGE, IP, ISSUER, NATIVE_CB, VERIFIER, WEB_CB, AuthzCase, query
from tests.oauth_helpers import PASSWORD
from tests.test_accounts import NEW_PASSWORD
from tests.test_ctl import Live


class ParseTests(AuthzCase):
    def test_a_valid_request(self) -> None:
        request = self.parse(nonce="n-0", login_hint="alice", max_age="300", prompt="consent",
                             ui_locales="de", unknown="ignored")
        assert (request.client.id, request.redirect_uri, request.redirect_given) == (self.web.id, WEB_CB, WEB_CB)
        assert (request.scope, request.state, request.code_challenge) == ("photos", "xyz", CHALLENGE)
        assert (request.nonce, request.login_hint, request.max_age, request.prompt) == (
            "n-0", "alice", 300, frozenset({"consent"}))
        assert ("ui_locales", "de") in request.params and "unknown" not in dict(request.params)

    def test_unknown_or_missing_client_is_shown(self) -> None:
        for client_id in ("", "cnosuchclient000", "x" * 5000):
            self.shown(client_id=client_id)
        self.successResultOf(self.server.update_client(self.web.id, enabled=False))
        self.shown()

    def test_bad_redirect_uris_are_shown_never_redirected(self) -> None:
        """
        Missing (with several registered), unregistered, or differing in any
        way from a registered one: shown on a page.
        """
        self.shown(redirect_uri=None)
        for uri in ("https://evil.example/cb", WEB_CB + "/", WEB_CB + "?x=1", "https://RP.example/cb",
                    "https://rp.example:443/cb", "not a uri", "http://[::1"):
            self.shown(redirect_uri=uri)

    def test_one_registered_uri_may_be_omitted_but_not_in_openid(self) -> None:
        request = authorize.parse(self.ctx, {
            "client_id": self.exempt.id, "response_type": "code", "scope": "photos"})
        assert (request.redirect_uri, request.redirect_given) == (self.exempt.redirect_uris[0], "")
        with self.assertRaises(authorize.ShownError):
            authorize.parse(self.ctx, {"client_id": self.exempt.id, "response_type": "code",
                                       "scope": "openid photos"})

    def test_loopback_port_may_vary_for_native_clients(self) -> None:
        native = {"client_id": self.native.id, "response_type": "code", "code_challenge": CHALLENGE,
                  "code_challenge_method": "S256"}
        for uri in ("http://127.0.0.1:51234/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb"):
            assert authorize.parse(self.ctx, {**native, "redirect_uri": uri}).redirect_uri == uri
        for uri in ("http://127.0.0.1:51234/other", "http://localhost:51234/cb",
                    "https://127.0.0.1:51234/cb", "http://127.0.0.2:51234/cb", "http://127.0.0.1:x/cb",
                    "http://u@127.0.0.1:5/cb"):
            with self.assertRaises(authorize.ShownError):
                authorize.parse(self.ctx, {**native, "redirect_uri": uri})
        # Only the port may differ: urlsplit drops tabs and newlines, and
        # would take an empty query, a fragment or a padded port as the same.
        for uri in ("http://127.0.0.1:51234/c\tb", "http://127.0.0.1:51234/cb\n", "http://127.0.0.1:5\r1/cb",
                    "http://127.0.0.1:51234/cb#", "http://127.0.0.1:51234/cb?", "http://127.0.0.1:01234/cb",
                    "http://127.0.0.1:/cb", "http://127.0.0.1:0/cb", "http://127.0.0.1:99999/cb",
                    "HTTP://127.0.0.1:51234/cb", "http://[::1]:80/cb#x", " http://127.0.0.1:5/cb"):
            with self.assertRaises(authorize.ShownError):
                authorize.parse(self.ctx, {**native, "redirect_uri": uri})
        # A registered URI ending in an empty query gets no second "?".
        self.admin.call(wire.ModifyClient, id=self.native.id, redirect_uris=["http://127.0.0.1/cb?"])
        request = authorize.parse(self.ctx, {**native, "redirect_uri": "http://127.0.0.1:5/cb?"})
        answer = authorize.error_answer(self.ctx, request, "access_denied", "no")
        assert answer.location.startswith("http://127.0.0.1:5/cb?error=access_denied&"), answer.location
        # A confidential client's loopback URI is matched exactly.
        self.successResultOf(self.server.update_client(self.web.id, redirect_uris=(NATIVE_CB,)))
        self.shown(redirect_uri="http://127.0.0.1:51234/cb")
        assert self.parse(redirect_uri=NATIVE_CB).redirect_uri == NATIVE_CB

    def test_private_use_schemes_only_for_public_clients(self) -> None:
        native = {"client_id": self.native.id, "response_type": "code", "code_challenge": CHALLENGE,
                  "code_challenge_method": "S256", "redirect_uri": "com.example.app:/cb"}
        assert authorize.parse(self.ctx, native).redirect_uri == "com.example.app:/cb"
        self.successResultOf(self.server.update_client(self.web.id, redirect_uris=("com.example.app:/cb",)))
        assert "private-use" in self.shown(redirect_uri="com.example.app:/cb").description

    def test_only_https_loopback_http_and_reverse_dns_schemes_are_registered(self) -> None:
        """
        RFC 8252 sections 7.1 and 8.4: a private-use scheme is a reverse
        domain name (it has a dot), so javascript:, data: and file: are not
        ones; no user information, no fragment, no spaces.
        """
        for uri in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "myapp:/cb",
                    "https://user@rp.example/cb", "https://rp.example/cb#", "http://localhost@evil.example/cb",
                    "https:///cb", "https://rp.example/c b", "https://rp.example/c\tb", "com.example.app:/c b",
                    "http://127.0.0.1@evil.example/cb", "com.example.app://u@host/cb"):
            error = self.admin.fails(wire.ModifyClient, id=self.native.id, redirect_uris=[uri])
            assert isinstance(error, wire.InvalidValue), uri
        for uri in ("https://rp.example/cb?x=1", "http://127.0.0.1/cb", "http://[::1]:8080/cb",
                    "http://localhost/cb", "com.example.app:/cb", "com.example.app:cb"):
            self.admin.call(wire.ModifyClient, id=self.native.id, redirect_uris=[uri])

    def test_other_errors_are_redirected_with_state_and_iss(self) -> None:
        cases = [
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"response_type": "code id_token"}, "unsupported_response_type"),
            ({"response_type": None}, "invalid_request"),
            ({"request": "eyJ..."}, "request_not_supported"),
            ({"request_uri": "https://rp.example/r"}, "request_uri_not_supported"),
            ({"scope": "photos nosuchscope"}, "invalid_scope"),
            ({"scope": "photos videos"}, "invalid_scope"),
            ({"response_mode": "fragment"}, "invalid_request"),
            ({"prompt": "none login"}, "invalid_request"),
            ({"prompt": "sometimes"}, "invalid_request"),
            ({"max_age": "-1"}, "invalid_request"),
            ({"nonce": "n" * 3000}, "invalid_request"),
        ]
        for params, error in cases:
            refused = self.refused(**params)
            answer = refused.answer
            assert (refused.error, answer.redirect_uri, answer.response_mode) == (error, WEB_CB, "query"), params
            values = dict(answer.params)
            assert (values["error"], values["state"], values["iss"]) == (error, "xyz", ISSUER), params
            assert query(answer.location) == values
        form_post = self.refused(response_type="token", response_mode="form_post").answer
        assert form_post.response_mode == "form_post"

    def test_a_client_without_the_grant_is_refused(self) -> None:
        self.successResultOf(self.server.update_client(self.web.id, grant_types=("refresh_token",)))
        assert self.refused().error == "unauthorized_client"

    def test_pkce_is_s256_only(self) -> None:
        for params in ({"code_challenge_method": "plain"}, {"code_challenge_method": None},
                       {"code_challenge": "short"}, {"code_challenge": CHALLENGE[:-1] + "!"}):
            assert self.refused(**params).error == "invalid_request", params

    def test_a_challenge_is_required_unless_the_client_is_exempt(self) -> None:
        # Confidential, PKCE required (the default).
        assert self.refused(code_challenge=None, code_challenge_method=None).error == "invalid_request"
        # Public: always.
        error = self.assertRaises(authorize.RedirectedError, authorize.parse, self.ctx, {
            "client_id": self.native.id, "redirect_uri": NATIVE_CB, "response_type": "code"})
        assert error.error == "invalid_request"
        # Exempt: may send none, and if it sends one it must be S256.
        exempt = {"client_id": self.exempt.id, "response_type": "code", "scope": "photos"}
        assert authorize.parse(self.ctx, exempt).code_challenge == ""
        assert authorize.parse(self.ctx, {**exempt, "code_challenge": CHALLENGE,
                                          "code_challenge_method": "S256"}).code_challenge == CHALLENGE
        with self.assertRaises(authorize.RedirectedError):
            authorize.parse(self.ctx, {**exempt, "code_challenge": CHALLENGE, "code_challenge_method": "plain"})

    def test_only_confidential_clients_may_be_exempt(self) -> None:
        row = self.admin.call(wire.ModifyClient, id=self.web.id, pkce="optional")
        assert row["pkce"] == "optional"
        for args in ({"id": self.native.id, "pkce": "optional"}, {"id": self.web.id, "pkce": "sometimes"}):
            assert isinstance(self.admin.fails(wire.ModifyClient, **args), wire.InvalidValue), args


class StepTests(AuthzCase):
    def test_no_session_needs_a_login_or_is_login_required(self) -> None:
        step = authorize.next_step(self.ctx, self.parse(login_hint="alice"), None)
        assert step == NeedsLogin(self.parse(login_hint="alice"), "no session", "alice")
        with self.assertRaises(authorize.RedirectedError) as caught:
            authorize.next_step(self.ctx, self.parse(prompt="none"), None)
        assert dict(caught.exception.answer.params)["error"] == "login_required"

    def test_prompt_none_with_a_session_but_no_consent_is_consent_required(self) -> None:
        session = self.session(self.browser_login())
        with self.assertRaises(authorize.RedirectedError) as caught:
            authorize.next_step(self.ctx, self.parse(prompt="none"), session)
        assert caught.exception.error == "consent_required"
        assert isinstance(authorize.next_step(self.ctx, self.parse(), session), NeedsConsent)

    def test_consent_is_remembered_and_covers_fewer_scopes(self) -> None:
        login = self.browser_login()
        self.answer(self.parse(scope="photos albums"), login)
        session = self.session(login)
        for scope in ("photos albums", "albums", "photos"):
            step = authorize.next_step(self.ctx, self.parse(scope=scope, prompt="none"), session)
            assert isinstance(step, Decision) and "code" in dict(step.answer.params), scope
        wider = authorize.next_step(self.ctx, self.parse(scope="openid photos"), session)
        assert isinstance(wider, NeedsConsent) and wider.scopes == ("openid", "photos")
        # Approving it remembers both.
        self.answer(self.parse(scope="openid photos"), login)
        assert self.ctx.state.authz.consent("alice", self.web.id).scope == "albums openid photos"

    def test_consent_is_not_remembered_for_native_redirect_uris(self) -> None:
        """
        Any app can claim a loopback port or a private-use scheme and send
        a native client's id (RFC 8252 section 8.6): its user is asked every
        time, so prompt=none is consent_required.
        """
        login = self.browser_login()
        for uri in (NATIVE_CB, "http://127.0.0.1:50000/cb", "com.example.app:/cb"):
            request = self.parse(client_id=self.native.id, redirect_uri=uri)
            self.answer(request, login)
            assert self.ctx.state.authz.consent("alice", self.native.id) is not None
            assert isinstance(authorize.next_step(self.ctx, request, self.session(login)), NeedsConsent)
            with self.assertRaises(authorize.RedirectedError) as caught:
                authorize.next_step(self.ctx, self.parse(client_id=self.native.id, redirect_uri=uri,
                                                         prompt="none"), self.session(login))
            assert caught.exception.error == "consent_required"

    def test_prompt_consent_asks_again(self) -> None:
        login = self.browser_login()
        self.answer(self.parse(), login)
        step = authorize.next_step(self.ctx, self.parse(prompt="consent"), self.session(login))
        assert isinstance(step, NeedsConsent)

    def test_denied_consent_answers_access_denied(self) -> None:
        answer = self.answer(self.parse(response_mode="form_post"), self.browser_login(), approve=False)
        assert answer.response_mode == "form_post"
        assert dict(answer.params) == {"error": "access_denied", "error_description": "the user denied the request",
                                       "state": "xyz", "iss": ISSUER}
        assert self.ctx.state.authz.consent("alice", self.web.id) is None

    def test_prompt_login_forces_a_login(self) -> None:
        login = self.browser_login()
        self.answer(self.parse(), login)
        request = self.parse(prompt="login")
        step = authorize.next_step(self.ctx, request, self.session(login))
        assert isinstance(step, NeedsLogin) and step.reason == "prompt=login"
        again = self.session(self.browser_login())
        assert isinstance(authorize.next_step(self.ctx, request, again, forced_login_done=True), Decision)

    def test_max_age(self) -> None:
        login = self.browser_login()
        self.answer(self.parse(), login)
        self.clock.advance(301)
        session = self.session(login)
        step = authorize.next_step(self.ctx, self.parse(max_age="300"), session)
        assert isinstance(step, NeedsLogin) and step.reason == "max_age"
        with self.assertRaises(authorize.RedirectedError) as caught:
            authorize.next_step(self.ctx, self.parse(max_age="300", prompt="none"), session)
        assert caught.exception.error == "login_required"
        assert isinstance(authorize.next_step(self.ctx, self.parse(max_age="400"), session), Decision)

    def test_the_consent_checks_prompt_login_and_max_age_again(self) -> None:
        login = self.browser_login()
        session = self.session(login)
        assert session is not None
        forced = authorize.consent(self.ctx, self.parse(prompt="login"), session, True)
        assert isinstance(forced, NeedsLogin) and forced.reason == "prompt=login"
        self.clock.advance(301)
        aged = authorize.consent(self.ctx, self.parse(max_age="300"), session, True)
        assert isinstance(aged, NeedsLogin) and aged.reason == "max_age"
        assert self.ctx.state.authz.consent("alice", self.web.id) is None
        for request in (self.parse(prompt="login"), self.parse(max_age="300")):
            step = authorize.consent(self.ctx, request, session, True, logged_in=True)
            assert isinstance(step, Decision), step

    def test_max_age_is_met_by_a_login_in_this_request(self) -> None:
        """
        max_age=0 asks for a login every time: the one just made counts,
        even if committing it took a moment.
        """
        request = self.parse(max_age="0")
        login = self.browser_login()
        self.clock.advance(1)
        assert isinstance(authorize.next_step(self.ctx, request, self.session(login)), NeedsLogin)
        step = authorize.next_step(self.ctx, request, self.session(login), forced_login_done=True)
        assert isinstance(step, NeedsConsent), step

    def test_the_answer_carries_code_state_and_iss(self) -> None:
        answer = self.answer(self.parse(), self.browser_login())
        assert isinstance(answer, Answer) and answer.redirect_uri == WEB_CB
        assert [name for name, _ in answer.params] == ["code", "state", "iss"]
        values = query(answer.location)
        assert len(values["code"]) >= 43 and values["state"] == "xyz" and values["iss"] == ISSUER
        # Only its digest is kept.
        assert values["code"] not in json.dumps([str(p) for p in self.journal.payloads])
        without_state = self.answer(self.parse(state=None), self.browser_login())
        assert [name for name, _ in without_state.params] == ["code", "iss"]


class BrowserSessionTests(AuthzCase):
    def test_a_session_ends_when_idle(self) -> None:
        """
        Seven days unused ends it; a use recorded (at most hourly) keeps it.
        """
        login = self.browser_login()
        self.clock.advance(7 * 86400 - 10)
        session = self.session(login)
        assert session is not None
        self.commit(browser.touch(self.ctx, session))
        self.clock.advance(7 * 86400 - 10)
        assert self.session(login) is not None
        self.clock.advance(11)
        assert self.session(login) is None

    def test_a_session_ends_at_its_absolute_lifetime(self) -> None:
        login = self.browser_login()
        for _ in range(3):
            self.clock.advance(5 * 86400)
            session = self.session(login)
            if session is None:
                break
            self.commit(browser.touch(self.ctx, session))
        assert self.clock.seconds() - login.session.issued_at == 15 * 86400 and session is None
        login = self.browser_login()
        for step in (6 * 86400, 6 * 86400, 2 * 86400 - 1):
            self.clock.advance(step)
            session = self.session(login)
            assert session is not None
            self.commit(browser.touch(self.ctx, session))
        self.clock.advance(1)
        assert self.session(login) is None

    def test_shorter_configured_lifetimes_count_for_sessions_started_before(self) -> None:
        idle, old = self.browser_login(), self.browser_login()
        self.ctx.config = attrs.evolve(self.ctx.config, browser_session_idle=3600,
                                       browser_session_max_age=7200)
        self.clock.advance(3000)
        session = self.session(old)
        assert session is not None
        self.commit(browser.touch(self.ctx, session))
        self.clock.advance(600)
        assert (self.session(idle), self.session(old) is not None) == (None, True)
        self.clock.advance(2400)
        session = self.session(old)
        assert session is not None
        self.commit(browser.touch(self.ctx, session))
        self.clock.advance(1199)
        assert self.session(old) is not None
        self.clock.advance(1)
        assert self.session(old) is None

    def test_touch_writes_at_most_hourly(self) -> None:
        session = self.session(self.browser_login())
        assert session is not None
        before = self.journal.record_count
        self.clock.advance(3599)
        self.commit(browser.touch(self.ctx, session))
        assert self.journal.record_count == before
        self.clock.advance(1)
        self.commit(browser.touch(self.ctx, session))
        assert self.journal.record_count == before + 1

    def test_logout(self) -> None:
        login = self.browser_login()
        self.commit(browser.logout(self.ctx, login.secret))
        assert self.session(login) is None
        assert self.commit(browser.logout(self.ctx, "nonsense")) is None

    def test_a_password_change_or_disable_ends_the_users_sessions(self) -> None:
        alice, bob = self.browser_login(), self.browser_login("bob")
        self.admin.call(wire.SetPassword, name="bob", password=NEW_PASSWORD)
        assert self.session(bob) is None and self.session(alice) is not None
        bob = self.browser_login("bob", NEW_PASSWORD)
        self.admin.call(wire.ModifyUser, name="bob", disabled=True)
        assert self.session(bob) is None
        self.admin.call(wire.ModifyUser, name="bob", disabled=False)
        assert self.session(bob) is None
        self.admin.call(wire.RemoveUser, name="alice")
        assert self.session(alice) is None

    def test_wrong_passwords_are_refused_and_rate_limited_with_the_password_grant(self) -> None:
        for _ in range(10):
            failure = self.failureResultOf(Deferred.fromCoroutine(
                browser.password_step(self.ctx, "alice", "wrong password", IP)), OAuthError)
            assert failure.value.error == "invalid_grant"
        failure = self.failureResultOf(Deferred.fromCoroutine(
            browser.password_step(self.ctx, "alice", PASSWORD, IP)), OAuthError)
        assert failure.value.status == 429
        # The owner, from another address, is not locked out by the guesser.
        self.successResultOf(Deferred.fromCoroutine(
            browser.password_step(self.ctx, "alice", PASSWORD, "203.0.113.1")))

    def test_browser_and_password_grant_share_their_limits(self) -> None:
        """
        Failed password grants from an address count against browser logins
        from it, as the same buckets (per source and username).
        """
        for _ in range(10):
            self.assert_error(self.password_grant("alice", "wrong password"), 400, "invalid_grant")
        # StubTreq's requests come from 127.0.0.1.
        failure = self.failureResultOf(Deferred.fromCoroutine(
            browser.password_step(self.ctx, "alice", PASSWORD, "127.0.0.1")), OAuthError)
        assert failure.value.status == 429

    def test_an_app_password_does_not_log_a_browser_in(self) -> None:
        app, _ = self.app_password()
        self.failureResultOf(Deferred.fromCoroutine(browser.password_step(self.ctx, "alice", app, IP)),
                             OAuthError)


class SecondFactorTurnedOnTests(AuthzCase):
    def test_turning_on_the_second_factor_ends_sessions_and_half_logins(self) -> None:
        login, bob = self.browser_login(), self.browser_login("bob")
        self.admin.call(wire.EnableSecondFactor, name="alice")
        assert self.session(login) is None and self.session(bob) is not None
        assert login.session.key not in self.ctx.state.authz.browsers

    def test_a_password_only_session_does_not_count_for_a_user_with_a_second_factor(self) -> None:
        """
        Even if one outlived the change (a journal written before enabling
        ended sessions), it is not a login.
        """
        login = self.browser_login()
        factor = enable(self.ctx, "alice").answer.factor
        self.commit(Decision(None, [SecondFactorEnabled(factor)]))
        assert login.session.key in self.ctx.state.authz.browsers
        assert self.session(login) is None


class SecondFactorLoginTests(AuthzCase):
    def setUp(self) -> None:
        super().setUp()
        self.secret = self.admin.call(wire.EnableSecondFactor, name="alice")["secret"]

    def half(self) -> HalfLogin:
        decision = self.successResultOf(Deferred.fromCoroutine(
            browser.password_step(self.ctx, "alice", PASSWORD, IP)))
        half = self.commit(decision)
        assert isinstance(half, HalfLogin), half
        return half

    def totp(self) -> str:
        return pyotp.TOTP(self.secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).at(self.clock.seconds())

    def test_the_password_then_the_code_log_in(self) -> None:
        half = self.half()
        assert self.ctx.state.authz.browsers == {}
        wrong = "000000" if self.totp() != "000000" else "111111"
        self.assertRaises(OAuthError, browser.second_factor_step, self.ctx, half.token, wrong, IP)
        login = self.commit(browser.second_factor_step(self.ctx, half.token, self.totp(), IP))
        assert isinstance(login, BrowserLogin) and login.session.amr == ("pwd", "otp")
        assert self.session(login) is not None
        # The half login is used up.
        self.assertRaises(OAuthError, browser.second_factor_step, self.ctx, half.token, self.totp(), IP)

    def test_a_half_login_is_used_once(self) -> None:
        """
        A second code, not a replayed one, still cannot reuse the half login.
        """
        half = self.half()
        self.commit(browser.second_factor_step(self.ctx, half.token, self.totp(), IP))
        self.clock.advance(TOTP_PERIOD)
        with self.assertRaises(OAuthError) as caught:
            browser.second_factor_step(self.ctx, half.token, self.totp(), IP)
        assert "log in again" in caught.exception.description
        assert len(self.ctx.state.authz.browsers) == 1

    def test_a_half_login_expires(self) -> None:
        half = self.half()
        self.clock.advance(browser.HALF_LOGIN_TTL)
        with self.assertRaises(OAuthError) as caught:
            browser.second_factor_step(self.ctx, half.token, self.totp(), IP)
        assert "log in again" in caught.exception.description


class ConsentAdminTests(AuthzCase):
    def test_consents_are_listed_and_revoked_over_the_control_socket(self) -> None:
        """
        users consents lists what alice approved; revoking one forgets it
        and revokes the tokens that client holds for her, and nothing else.
        """
        code = self.code(scope="photos albums")
        reply = self.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB,
                            "code_verifier": VERIFIER}, auth=(self.web.id, self.web_secret))
        assert reply.code == 200, reply
        other = self.password_grant("alice").body["access_token"]
        rows = json.loads(self.admin.call(wire.ListConsents, name="alice")["rows"])
        assert rows == [{"client_id": self.web.id, "client_name": "Web App", "scope": "albums photos",
                         "granted_at": int(self.clock.seconds())}]
        row = self.admin.call(wire.RevokeConsent, name="alice", client_id=self.web.id)
        assert (row["scope"], row["revoked"]) == ("albums photos", 2)
        assert json.loads(self.admin.call(wire.ListConsents, name="alice")["rows"]) == []
        assert self.server.authenticate_token(reply.body["access_token"]) is None
        assert self.server.authenticate_token(other) is not None
        assert isinstance(self.admin.fails(wire.RevokeConsent, name="alice", client_id=self.web.id),
                          wire.NotFound)
        assert isinstance(self.admin.fails(wire.ListConsents, name="nobody"), wire.NotFound)
        # Asked again next time.
        step = authorize.next_step(self.ctx, self.parse(), self.session(self.browser_login()))
        assert isinstance(step, NeedsConsent)

    def test_removing_the_client_or_user_drops_consents(self) -> None:
        self.code()
        self.code(login=self.browser_login("bob"))
        self.admin.call(wire.RemoveClient, id=self.web.id)
        assert self.ctx.state.authz.consents == {}
        self.code(login=None, client_id=self.exempt.id, redirect_uri=self.exempt.redirect_uris[0],
                  code_challenge=None, code_challenge_method=None)
        self.admin.call(wire.RemoveUser, name="alice")
        assert self.ctx.state.authz.consents == {}


# ---------------------------------------------------------------------------
# oauthctl


@pytest_twisted.ensureDeferred
async def test_oauthctl_users_consents_and_clients_pkce(tmp_path: Path) -> None:
    """
    C{clients add --grant authorization_code --redirect-uri ... --pkce
    optional} registers a relying party without PKCE; C{users consents}
    lists a user's consents and C{--revoke} removes one.
    """
    live = Live(tmp_path)
    try:
        await live.ok("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
        added = (await live.ok(
            "clients", "add", "--name", "PhotoPrism", "--grant", "authorization_code",
            "--grant", "refresh_token", "--redirect-uri", WEB_CB, "--redirect-uri", NATIVE_CB,
            "--pkce", "optional", "--scope", "openid photos", "--json")).json()
        assert (added["pkce"], added["redirect_uris"]) == ("optional", [WEB_CB, NATIVE_CB])
        public = await live.ctl("clients", "add", "--name", "Phone", "--public", "--grant", "authorization_code",
                              "--pkce", "optional")
        assert public.code == 1 and "always needs PKCE" in public.err
        phone = (await live.ok("clients", "add", "--name", "Phone", "--public", "--grant", "authorization_code",
                               "--redirect-uri", "com.example.app:/cb", "--json")).json()
        assert (phone["type"], phone["pkce"], phone["secret"]) == ("public", "required", "")
        ctx = live.server.ctx
        store = live.server.store
        session = await store.commit(await browser.password_step(ctx, "bob", PASSWORD, IP))
        request = authorize.parse(ctx, {"client_id": added["id"], "redirect_uri": WEB_CB,
                                        "response_type": "code", "scope": "photos"})
        await store.commit(authorize.consent(ctx, request, session.session, True))
        listed = (await live.ok("users", "consents", "bob")).out
        assert added["id"] in listed and "PhotoPrism" in listed and "photos" in listed
        revoked = (await live.ok("users", "consents", "bob", "--revoke", added["id"])).out
        assert revoked.startswith(f"Revoked the consent of bob to client {added['id']}")
        assert (await live.ok("users", "consents", "bob", "--json")).json() == []
        assert "no client" in (await live.ok("users", "consents", "bob")).out
        assert (await live.ctl("users", "consents", "bob", "--revoke", added["id"])).code == 1
        modified = (await live.ok("clients", "mod", added["id"], "--pkce", "required", "--json")).json()
        assert modified["pkce"] == "required"
    finally:
        await live.stop()
