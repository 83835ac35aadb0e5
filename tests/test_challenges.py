"""
Every 401 carries a C{WWW-Authenticate} challenge (RFC 9110 section
15.5.2): Basic where clients authenticate, Bearer at the resources; a
request with no credentials at all gets the bare challenge and no error
(RFC 6750 section 3.1); a resource's 400 carries its Bearer challenge too.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.oauth_helpers import INTROSPECT, REVOKE, SESSION, TOKEN, USERINFO, OAuthCase, Reply, bearer

BASIC = 'Basic realm="oauthd"'
BARE_BEARER = 'Bearer realm="oauthd"'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BAD_TOKEN = "0" * 48


class ChallengeTests(OAuthCase):
    def refusals(self) -> list[tuple[str, Reply]]:
        """
        A refusal of every kind each endpoint gives: no credentials, wrong
        ones, malformed ones, ones of another scheme, a bad bearer token.
        """
        public, _ = self.add_client("public", type="public", grant_types=("password",))
        disabled, disabled_secret = self.add_client("off", grant_types=("password",))
        self.successResultOf(self.server.update_client(disabled.id, enabled=False))
        wrong = {"client_id": self.client.id, "client_secret": "wrong"}
        malformed = {"Authorization": "Basic !!!"}
        other = {"Authorization": "Digest x"}
        basic_nocolon = {"Authorization": "Basic " + base64.b64encode(b"x").decode()}
        replies: list[tuple[str, Reply]] = []
        for path in (TOKEN, REVOKE, INTROSPECT):
            form = {"grant_type": "client_credentials", "token": BAD_TOKEN}
            for what, kwargs in [
                ("nothing", {}),
                ("secret in body", {"form": {**form, **wrong}}),
                ("wrong basic", {"auth": (self.client.id, "wrong")}),
                ("malformed basic", {"headers": malformed}),
                ("basic without colon", {"headers": basic_nocolon}),
                ("another scheme", {"headers": other}),
                ("public client", {"form": {**form, "client_id": public.id}}),
                ("bad bearer", {"headers": {"X-Auth-Token": BAD_TOKEN}}),
            ]:
                kwargs.setdefault("form", form)
                replies.append((f"{path} {what}", self.post(path, **kwargs)))
        replies.append(("password grant, disabled client", self.token(
            {"grant_type": "password", "username": "alice", "password": "x"},
            auth=(disabled.id, disabled_secret))))
        for method in ("GET", "POST"):
            for what, headers in [("nothing", {}), ("bad bearer", bearer(BAD_TOKEN)),
                                  ("other scheme", other), ("basic", malformed)]:
                replies.append((f"{method} userinfo {what}", self.request(method, USERINFO, headers=headers)))
        for what, headers in [("nothing", {}), ("bad bearer", bearer(BAD_TOKEN)),
                              ("bad session id", {"X-Session-ID": BAD_TOKEN})]:
            replies.append((f"DELETE session {what}", self.request("DELETE", SESSION, headers=headers)))
            replies.append((f"DELETE session ref {what}",
                            self.request("DELETE", SESSION + "/abc", headers=headers)))
        return replies

    def test_every_401_has_a_challenge(self) -> None:
        unauthorized = [(what, reply) for what, reply in self.refusals() if reply.code == 401]
        assert len(unauthorized) > 25
        for what, reply in unauthorized:
            challenge = reply.header("www-authenticate")
            assert challenge is not None, (what, reply)
            # Revocation and introspection also take PhotoPrism's bearer token.
            bearer_used = "bearer" in what and not what.startswith(TOKEN)
            resource = "userinfo" in what or "session" in what or bearer_used
            assert challenge.startswith("Bearer realm=" if resource else BASIC), (what, challenge)

    def test_no_client_credentials_get_a_basic_challenge(self) -> None:
        reply = self.post(REVOKE, {"token": BAD_TOKEN})
        self.assert_error(reply, 401, "invalid_client")
        assert reply.header("www-authenticate") == BASIC

    def test_no_token_gets_the_bare_challenge_and_no_error(self) -> None:
        """
        RFC 6750 section 3.1: a request that presents no token is told only
        the challenge, with no error code in it or in the body.
        """
        for method, path in (("GET", USERINFO), ("POST", USERINFO), ("DELETE", SESSION)):
            for headers in ({}, {"Authorization": "Basic eDp5"}, {"X-Auth-Token": " "}):
                reply = self.request(method, path, headers=headers)
                assert reply.code == 401, (method, path, headers, reply)
                assert reply.header("www-authenticate") == BARE_BEARER
                assert reply.body == {}, reply
                assert reply.header("cache-control") == "no-store"

    def test_userinfo_400s_carry_the_bearer_challenge(self) -> None:
        access = self.password_grant(scope="openid").body["access_token"]
        cases: list[dict[str, Any]] = [
            {"headers": {"X-Auth-Token": [access, access]}},
            {"headers": {**bearer(access), **FORM}, "body": b"access_token=" + access.encode()},
            {"headers": FORM, "body": b"a=1&a=2"},
        ]
        for kwargs in cases:
            reply = self.request("POST", USERINFO, **kwargs)
            self.assert_error(reply, 400, "invalid_request")
            challenge = reply.header("www-authenticate") or ""
            assert challenge.startswith('Bearer realm="oauthd", error="invalid_request", error_description="'), \
                (kwargs, challenge)

    def test_a_token_endpoint_400_has_no_challenge(self) -> None:
        reply = self.token({"grant_type": "nonsense"})
        assert reply.code == 400 and reply.header("www-authenticate") is None
