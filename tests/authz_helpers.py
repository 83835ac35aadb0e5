"""
Fixtures for the authorization endpoint's protocol tests and the
authorization code grant: clients of every kind, a browser login, and a
whole flow up to a code (L{oauthd.protocol.authorize},
L{oauthd.protocol.browser}), over the server of L{AccountCase}.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import Deferred

from oauthd.protocol import authorize, browser
from oauthd.protocol.authorize import Answer, AuthorizationRequest
from oauthd.protocol.browser import BrowserLogin
from oauthd.state.authz_records import BrowserSession
from oauthd.state.decision import Decision
from tests.oauth_helpers import PASSWORD
from tests.test_accounts import AccountCase

ISSUER = "https://auth.example.com"
WEB_CB = "https://rp.example/cb"
NATIVE_CB = "http://127.0.0.1/cb"
IP = "198.51.100.9"


def pkce_pair(seed: int = 0) -> tuple[str, str]:
    """
    A PKCE verifier and its S256 challenge.
    """
    verifier = "".join(random.Random(seed).choices("abcdefghijklmnopqrstuvwxyz0123456789-._~", k=64))
    return verifier, authorize.s256(verifier)


VERIFIER, CHALLENGE = pkce_pair()


class AuthzCase(AccountCase):
    """
    L{AccountCase} with a confidential web client (C{self.web}), a public
    native one (C{self.native}) and a confidential one exempt from PKCE
    (C{self.exempt}), each allowed the authorization code grant.
    """

    def setUp(self) -> None:
        super().setUp()
        grants = ("authorization_code", "refresh_token")
        self.web, self.web_secret = self.add_client(
            "Web App", grant_types=grants, scope="openid photos albums",
            redirect_uris=(WEB_CB, "https://rp.example/other"))
        self.native, _ = self.add_client(
            "Phone App", type="public", grant_types=grants, scope="photos albums",
            redirect_uris=(NATIVE_CB, "http://[::1]/cb", "com.example.app:/cb"))
        self.exempt, self.exempt_secret = self.add_client(
            "PhotoPrism", grant_types=grants, scope="openid photos", pkce="optional",
            redirect_uris=("https://photos.example/api/v1/oidc/redirect",))

    @property
    def ctx(self) -> Any:
        return self.server.ctx

    def commit(self, decision: Decision[Any]) -> Any:
        return self.successResultOf(self.server.store.commit(decision))

    def parse(self, **params: str) -> AuthorizationRequest:
        """
        The web client's request with C{params} (C{None}-valued ones left
        out) over a valid default.
        """
        base = {"client_id": self.web.id, "redirect_uri": WEB_CB, "response_type": "code",
                "scope": "photos", "state": "xyz", "code_challenge": CHALLENGE,
                "code_challenge_method": "S256"}
        base.update(params)
        return authorize.parse(self.ctx, {k: v for k, v in base.items() if v is not None})

    def refused(self, **params: str) -> authorize.RedirectedError:
        with self.assertRaises(authorize.RedirectedError) as caught:
            self.parse(**params)
        return caught.exception

    def shown(self, **params: str) -> authorize.ShownError:
        with self.assertRaises(authorize.ShownError) as caught:
            self.parse(**params)
        return caught.exception

    def browser_login(self, username: str = "alice", password: str = PASSWORD) -> BrowserLogin:
        decision = self.successResultOf(Deferred.fromCoroutine(
            browser.password_step(self.ctx, username, password, IP)))
        login = self.commit(decision)
        assert isinstance(login, BrowserLogin), login
        return login

    def session(self, login: BrowserLogin) -> BrowserSession | None:
        return browser.browser_session(self.ctx, login.secret)

    def answer(self, request: AuthorizationRequest, login: BrowserLogin, approve: bool = True) -> Answer:
        """
        The answer to C{request} in C{login}'s session, approving it on the
        consent page if asked.
        """
        session = self.session(login)
        step = authorize.next_step(self.ctx, request, session)
        if isinstance(step, authorize.NeedsConsent):
            step = authorize.consent(self.ctx, request, step.browser, approve)
        assert isinstance(step, Decision), step
        answer = self.commit(step)
        assert isinstance(answer, Answer)
        return answer

    def code(self, login: BrowserLogin | None = None, **params: str) -> str:
        """
        A code for the web client's request with C{params}.
        """
        answer = self.answer(self.parse(**params), login or self.browser_login())
        values = dict(answer.params)
        assert values["iss"] == ISSUER, values
        return values["code"]


def query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))
