"""
The authorization code grant at the token endpoint, over HTTP in memory
(issue 14): a code is good once (a second use revokes what the first gave,
also when both arrive before the first is durable), bound to its client,
redirect URI and PKCE challenge, and short-lived.
"""

from __future__ import annotations

from typing import Any

from oauthd.control import wire
from oauthd.protocol import authorize
from oauthd.protocol.grants import authorization_code
from oauthd.protocol.errors import OAuthError
from tests.authz_helpers import IP, VERIFIER, WEB_CB, AuthzCase, pkce_pair
from tests.oauth_helpers import TOKEN, Reply


class CodeGrantTests(AuthzCase):
    def redeem(self, code: str, auth: Any = None, **form: Any) -> Reply:
        fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB,
                  "code_verifier": VERIFIER, **form}
        return self.token({k: v for k, v in fields.items() if v is not None},
                          auth=auth or (self.web.id, self.web_secret))

    def test_a_code_gives_tokens_once(self) -> None:
        reply = self.redeem(self.code(scope="photos albums"))
        assert reply.code == 200, reply
        body = reply.body
        assert (body["token_type"], body["scope"], body["client_name"]) == ("Bearer", "albums photos", "Web App")
        access = self.server.authenticate_token(body["access_token"])
        assert access is not None and (access.user, access.client_id) == ("alice", self.web.id)
        # The refresh token rotates like any other.
        refreshed = self.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                               auth=(self.web.id, self.web_secret))
        assert refreshed.code == 200, refreshed

    def test_a_second_use_fails_and_revokes_what_the_first_gave(self) -> None:
        code = self.code()
        first = self.redeem(code).body
        self.assert_error(self.redeem(code), 400, "invalid_grant")
        for token in (first["access_token"], first["refresh_token"]):
            assert self.server.authenticate_token(token) is None
        # Also after a restart: the redemption is a record.
        code = self.code()
        self.redeem(code)
        self.restart()
        self.assert_error(self.redeem(code), 400, "invalid_grant")

    def test_concurrent_redemptions_exactly_one_succeeds(self) -> None:
        """
        Two requests with one code, the second arriving while the first's
        records are not yet durable: the first decision marked the code
        redeemed in memory at commit, so the second is refused (and revokes
        the first's tokens, as any second use does).
        """
        code = self.code()
        self.journal.holding = True
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB,
                "code_verifier": VERIFIER}
        first = self.treq.post("http://oauthd.test" + TOKEN, data=form, auth=(self.web.id, self.web_secret))
        second = self.treq.post("http://oauthd.test" + TOKEN, data=form, auth=(self.web.id, self.web_secret))
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.journal.release()
        self.treq.flush()
        assert [self.successResultOf(d).code for d in (first, second)] == [200, 400]
        assert self.ctx.state.user_tokens("alice", self.clock.seconds()) == []

    def test_two_decisions_one_commit(self) -> None:
        """
        At the protocol layer: once a redemption is committed (not yet
        durable), the next decision on the code is the reuse refusal.
        """
        code = self.code()
        params = {"code": code, "redirect_uri": WEB_CB, "code_verifier": VERIFIER}
        self.journal.holding = True
        first = authorization_code.decide(self.ctx, self.web, params, IP)
        pending = self.server.store.commit(first)
        second = authorization_code.decide(self.ctx, self.web, params, IP)
        assert isinstance(second.refusal, OAuthError) and second.refusal.error == "invalid_grant"
        self.journal.release()
        self.successResultOf(pending)

    def test_pkce_verifier_must_match(self) -> None:
        code = self.code()
        other, _ = pkce_pair(1)
        for verifier in (None, other, "short", VERIFIER + "x"):
            self.assert_error(self.redeem(code, code_verifier=verifier), 400, "invalid_grant")
        # Nothing was changed by the bad requests: the code still works.
        assert self.redeem(code).code == 200

    def test_a_verifier_without_a_challenge_is_refused(self) -> None:
        answer = self.answer(authorize.parse(self.ctx, {
            "client_id": self.exempt.id, "response_type": "code", "scope": "photos"}), self.browser_login())
        code = dict(answer.params)["code"]
        auth = (self.exempt.id, self.exempt_secret)
        self.assert_error(self.redeem(code, auth=auth, redirect_uri=None), 400, "invalid_grant")
        # redirect_uri was omitted at the authorization endpoint: it may be
        # omitted here, or be the registered one.
        reply = self.redeem(code, auth=auth, redirect_uri=self.exempt.redirect_uris[0], code_verifier=None)
        assert reply.code == 200, reply

    def test_redirect_uri_must_be_repeated(self) -> None:
        code = self.code()
        for uri in (None, "", "https://rp.example/other"):
            self.assert_error(self.redeem(code, redirect_uri=uri), 400, "invalid_grant")
        assert self.redeem(code).code == 200

    def test_an_expired_code_is_refused(self) -> None:
        code = self.code()
        self.clock.advance(self.config.authorization_code_ttl)
        self.assert_error(self.redeem(code), 400, "invalid_grant")

    def test_a_code_is_bound_to_its_client(self) -> None:
        code = self.code()
        other, secret = self.add_client("Other", grant_types=("authorization_code",), redirect_uris=(WEB_CB,))
        self.assert_error(self.redeem(code, auth=(other.id, secret)), 400, "invalid_grant")
        assert self.redeem(code).code == 200

    def test_a_public_client_redeems_with_its_id(self) -> None:
        request = authorize.parse(self.ctx, {
            "client_id": self.native.id, "redirect_uri": "http://127.0.0.1:50000/cb",
            "response_type": "code", "code_challenge": authorize.s256(VERIFIER),
            "code_challenge_method": "S256"})
        code = dict(self.answer(request, self.browser_login()).params)["code"]
        reply = self.post(TOKEN, {"grant_type": "authorization_code", "code": code, "client_id": self.native.id,
                                  "redirect_uri": "http://127.0.0.1:50000/cb", "code_verifier": VERIFIER})
        assert reply.code == 200 and "refresh_token" in reply.body, reply

    def test_a_code_dies_with_its_browser_session(self) -> None:
        login = self.browser_login()
        code = self.code(login=login)
        self.admin.call(wire.SetPassword, name="alice", password="a brand new passphrase")
        self.assert_error(self.redeem(code), 400, "invalid_grant")

    def test_malformed_requests_change_nothing(self) -> None:
        code = self.code()
        before = self.journal.record_count
        self.assert_error(self.redeem(""), 400, "invalid_request")
        for bad in ("x" * 200, "\x00", code[:-1], code + "x"):
            self.assert_error(self.redeem(bad), 400, "invalid_grant")
        assert self.journal.record_count == before
        assert self.redeem(code).code == 200
