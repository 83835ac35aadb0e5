"""
ID tokens (OpenID Connect Core) and JWT access tokens (RFC 9068) over HTTP
in memory, each checked by joserfc against the JWKS as a relying party or
resource server would, offline.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import attrs
import pyotp
from joserfc import jwt
from joserfc.jwk import KeySet

from oauthd.protocol import signing
from oauthd.protocol.subjects import is_uid
from tests.oauth_helpers import USERINFO, bearer
from tests.page_case import PageCase

INTROSPECT = "/api/v1/oauth/introspect"
REVOKE = "/api/v1/oauth/revoke"


def left_half_hash(value: str, hash_name: str) -> str:
    digest = hashlib.new(hash_name, value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:len(digest) // 2]).decode("ascii").rstrip("=")


class IdTokenCase(PageCase):
    def code(self, **params: str) -> str:
        """
        A code for Gallery's request with C{params}, logging in and
        consenting as the pages ask.
        """
        shown = self.authorize(**params)
        for _ in range(4):
            kind = self.kind(shown)
            if kind == "redirect":
                return shown.redirect[1]["code"]
            if kind == "login":
                shown = self.log_in(shown)
            elif kind == "consent":
                shown = self.approve(shown)
            else:
                raise AssertionError(kind)
        raise AssertionError("no redirect")

    def tokens(self, **params: str) -> Any:
        reply = self.redeem(self.code(**params))
        assert reply.code == 200, reply
        return reply.body

    def verified(self, token: str, alg: str = "RS256", typ: str = "JWT") -> dict[str, Any]:
        """
        The claims of C{token}, checked against the JWKS (the public keys
        only) as a relying party would.
        """
        keys = KeySet.import_key_set(signing.jwks(self.server.ctx))  # type: ignore[arg-type]
        decoded = jwt.decode(token, keys, algorithms=[alg])
        assert decoded.header["alg"] == alg and decoded.header["typ"] == typ, decoded.header
        assert decoded.header["kid"] in {key["kid"] for key in signing.jwks(self.server.ctx)["keys"]}
        return dict(decoded.claims)

    def sid(self) -> str:
        (session,) = self.server.state.authz.browsers.values()
        return session.handle


class IdTokenTests(IdTokenCase):
    def test_claims_and_signature_for_each_algorithm(self) -> None:
        """
        The code grant with openid gives an ID token with every claim Core
        section 2 asks for, signed by the client's algorithm and verified
        with the JWKS; at_hash is the left half of the access token's hash
        by the algorithm's hash function.
        """
        alice = self.server.state.users["alice"]
        login_time = int(self.clock.seconds()) + 5
        for alg, hash_name in (("RS256", "sha256"), ("ES256", "sha256"), ("EdDSA", "sha512")):
            self.successResultOf(self.server.update_client(
                self.gallery.id, id_token_signed_response_alg=alg))
            self.clock.advance(5)
            body = self.tokens(nonce="n-" + alg)
            claims = self.verified(body["id_token"], alg)
            now = int(self.clock.seconds())
            assert claims == {
                "iss": "https://auth.example.com", "sub": alice.uid, "aud": self.gallery.id,
                "exp": now + 3600, "iat": now, "auth_time": login_time, "nonce": "n-" + alg,
                "at_hash": left_half_hash(body["access_token"], hash_name), "amr": ["pwd"],
                "sid": self.sid(),
            }, claims
            assert is_uid(claims["sub"])

    def test_the_server_default_algorithm(self) -> None:
        """
        A client that names no algorithm gets the server's id_token_alg.
        """
        self.server.ctx.config = attrs.evolve(self.server.ctx.config, id_token_alg="ES256")
        self.verified(self.tokens()["id_token"], "ES256")

    def test_without_a_nonce_none_is_in_the_token(self) -> None:
        claims = self.verified(self.tokens()["id_token"])
        assert "nonce" not in claims

    def test_no_id_token_without_openid(self) -> None:
        body = self.tokens(scope="photos")
        assert "id_token" not in body

    def test_auth_time_with_max_age(self) -> None:
        """
        auth_time is when the user logged in: a later request within
        max_age keeps it, one past max_age logs in again and gets the new
        time.
        """
        first = self.verified(self.tokens()["id_token"])
        self.clock.advance(100)
        kept = self.verified(self.tokens(max_age="1000")["id_token"])
        assert kept["auth_time"] == first["auth_time"]
        shown = self.authorize(max_age="50")
        assert self.kind(shown) == "login"
        self.log_in(shown)
        self.clock.advance(1)
        again = self.verified(self.tokens(max_age="50")["id_token"])
        assert again["auth_time"] == first["auth_time"] + 100

    def test_refresh_gives_an_id_token_of_the_original_login(self) -> None:
        """
        OpenID Connect Core section 12.2: a refreshed ID token has the
        original auth_time, amr and sid, a new iat and at_hash, no nonce.
        """
        body = self.tokens(nonce="abc")
        first = self.verified(body["id_token"])
        self.clock.advance(600)
        reply = self.post("/api/v1/oauth/token", {
            "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
            "client_id": self.gallery.id})
        assert reply.code == 200, reply
        again = self.verified(reply.body["id_token"])
        assert again["iat"] == first["iat"] + 600
        assert {k: again[k] for k in ("auth_time", "amr", "sid", "sub", "aud")} == {
            k: first[k] for k in ("auth_time", "amr", "sid", "sub", "aud")}
        assert again["at_hash"] == left_half_hash(reply.body["access_token"], "sha256")
        assert "nonce" not in again

    def test_profile_claims_only_with_the_client_setting(self) -> None:
        """
        The claims of profile, email and address go to userinfo; into the
        ID token only for a client with id_token_claims.
        """
        self.successResultOf(self.server.update_client(
            self.gallery.id, scope="openid profile email address photos"))
        scope = "openid profile email address"
        assert "preferred_username" not in self.verified(self.tokens(scope=scope)["id_token"])
        self.successResultOf(self.server.update_client(self.gallery.id, id_token_claims=True))
        claims = self.verified(self.tokens(scope=scope)["id_token"])
        assert (claims["preferred_username"], claims["name"], claims["email"]) == (
            "alice", "Alice Liddell", "alice@example.com")

    def test_two_factors_give_mfa(self) -> None:
        """
        A login with a TOTP code: amr says so (RFC 8176).
        """
        enrollment = self.enable_second_factor("alice")
        shown = self.authorize()
        shown = self.log_in(shown)
        assert self.kind(shown) == "second-factor"
        self.clock.advance(30)
        self.submit(shown, otp=pyotp.TOTP(enrollment.factor.secret).at(int(self.clock.seconds())))
        claims = self.verified(self.tokens()["id_token"])
        assert claims["amr"] == ["pwd", "otp", "mfa"]


class JwtAccessTokenTests(IdTokenCase):
    def setUp(self) -> None:
        super().setUp()
        self.successResultOf(self.server.update_client(
            self.gallery.id, jwt_access_tokens=True, audience=("https://photos.example/api",)))
        self.rs, self.rs_secret = self.add_client("resource server", scope="metrics", introspect=True)

    def introspect(self, token: str) -> Any:
        return self.post(INTROSPECT, {"token": token}, auth=(self.rs.id, self.rs_secret)).body

    def test_claims_and_offline_verification(self) -> None:
        """
        The access token is an RFC 9068 JWT a resource server checks with
        the JWKS alone; the server still answers for it (userinfo).
        """
        body = self.tokens(scope="openid photos")
        claims = self.verified(body["access_token"], typ="at+jwt")
        alice = self.server.state.users["alice"]
        now = int(self.clock.seconds())
        jti = claims.pop("jti")
        assert isinstance(jti, str) and len(jti) == 32
        assert claims == {
            "iss": "https://auth.example.com", "exp": now + 3600, "aud": "https://photos.example/api",
            "sub": alice.uid, "client_id": self.gallery.id, "iat": now, "scope": "openid photos",
            "auth_time": now, "amr": ["pwd"]}
        reply = self.request("GET", USERINFO, headers=bearer(body["access_token"]))
        assert (reply.code, reply.body["sub"]) == (200, alice.uid)
        # The bare jti is no token.
        assert self.request("GET", USERINFO, headers=bearer(jti)).code == 401

    def test_revocation_is_seen_by_introspection(self) -> None:
        body = self.tokens(scope="openid photos")
        access = body["access_token"]
        seen = self.introspect(access)
        assert seen["active"] is True and seen["sub"] == self.server.state.users["alice"].uid
        reply = self.post(REVOKE, {"token": access, "client_id": self.gallery.id})
        assert reply.code == 200, reply
        assert self.introspect(access) == {"active": False}
        assert self.request("GET", USERINFO, headers=bearer(access)).code == 401

    def test_a_forged_or_altered_token_is_refused(self) -> None:
        access = self.tokens(scope="openid photos")["access_token"]
        header, payload, signature = access.split(".")
        altered = ".".join((header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")))
        assert self.introspect(altered) == {"active": False}
        assert self.request("GET", USERINFO, headers=bearer(altered)).code == 401

    def test_client_credentials_have_the_client_as_subject(self) -> None:
        self.successResultOf(self.server.update_client(self.client.id, jwt_access_tokens=True))
        reply = self.token({"grant_type": "client_credentials", "scope": "metrics"})
        assert reply.code == 200, reply
        claims = self.verified(reply.body["access_token"], typ="at+jwt")
        assert (claims["sub"], claims["client_id"], claims["aud"]) == (
            self.client.id, self.client.id, "https://auth.example.com")
        assert "auth_time" not in claims and "amr" not in claims
        assert self.introspect(reply.body["access_token"])["active"] is True
