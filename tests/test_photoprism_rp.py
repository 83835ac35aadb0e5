"""
PhotoPrism as a relying party (issue 15): a test client that makes the
requests PhotoPrism's OpenID Connect login makes (its C{internal/auth/oidc},
on zitadel's relying-party library), in the same order, and checks what
they check:

  1. discovery, twice (PhotoPrism's own C{client.Discover}, then the
     library's C{NewRelyingPartyOIDC}): the issuer must be the one
     configured; PKCE (S256) is used because discovery lists it;
  2. the browser to the authorization endpoint: C{client_id},
     C{redirect_uri} C{<site>/api/v1/oidc/redirect}, C{response_type=code},
     the scopes C{openid email profile address}, C{state}, C{nonce},
     C{code_challenge} and C{code_challenge_method=S256};
  3. the code exchange with C{client_secret_basic}: C{grant_type},
     C{code}, C{redirect_uri}, C{code_verifier};
  4. the ID token verified against the keys of C{jwks_uri}: signature and
     algorithm, C{iss}, C{aud} holding the client id, C{azp} if present,
     C{exp}, C{iat}, C{at_hash} of the access token, and the C{nonce}
     PhotoPrism kept in a cookie;
  5. userinfo with C{Authorization: Bearer}, whose C{sub} must be the ID
     token's; PhotoPrism names the account by C{preferred_username} and
     takes C{name}, C{email} and C{email_verified}.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from oauthd.ctl.cli import build_parser
from oauthd.protocol import signing
from oauthd.protocol.admin.users import update_user
from tests.page_case import PageCase, challenge

ISSUER = "https://auth.example.com"
SITE = "https://photos.example"
REDIRECT = SITE + "/api/v1/oidc/redirect"
SCOPES = "openid email profile address"


class PhotoPrismLoginTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        # The recipe of docs/photoprism.md.
        self.photoprism, self.photoprism_secret = self.add_client(
            "PhotoPrism", grant_types=("authorization_code", "refresh_token"), scope=SCOPES,
            redirect_uris=(REDIRECT,))
        self.successResultOf(self.server.store.commit(update_user(
            self.server.ctx, "alice", email_verified=True, address="1 Rabbit Hole, Oxford")))

    def discover(self) -> dict[str, Any]:
        reply = self.request("GET", "/.well-known/openid-configuration")
        assert reply.code == 200, reply
        doc: dict[str, Any] = reply.body
        assert doc["issuer"] == ISSUER
        return doc

    def keys(self, doc: dict[str, Any]) -> KeySet:
        if "jwks_uri" in doc:
            assert doc["jwks_uri"].startswith(ISSUER + "/")
            reply = self.request("GET", doc["jwks_uri"][len(ISSUER):])
            assert reply.code == 200, reply
            return KeySet.import_key_set(reply.body)
        # Until the JWKS route is served (issue 15's keys part), its keys.
        return KeySet.import_key_set(signing.jwks(self.server.ctx))  # type: ignore[arg-type]

    def test_log_into_photoprism(self) -> None:
        doc = self.discover()
        doc = self.discover()
        assert {"authorization_endpoint", "token_endpoint", "userinfo_endpoint"} <= set(doc)
        assert "S256" in doc["code_challenge_methods_supported"]
        assert set(SCOPES.split()) <= set(doc["scopes_supported"])
        verifier = secrets.token_urlsafe(32)
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = {
            "client_id": self.photoprism.id, "redirect_uri": REDIRECT, "response_type": "code",
            "scope": SCOPES, "state": state, "nonce": nonce, "code_challenge": challenge(verifier),
            "code_challenge_method": "S256",
        }
        shown = self.browse("GET", doc["authorization_endpoint"][len(ISSUER):] + "?" + urlencode(query))
        shown = self.approve(self.log_in(shown))
        where, back = shown.redirect
        assert where == REDIRECT and back["state"] == state

        basic = base64.b64encode(f"{self.photoprism.id}:{self.photoprism_secret}".encode()).decode()
        reply = self.post(doc["token_endpoint"][len(ISSUER):], {
            "grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier}, headers={"Authorization": "Basic " + basic})
        assert reply.code == 200, reply
        tokens = reply.body
        assert tokens["token_type"] == "Bearer"

        decoded = jwt.decode(tokens["id_token"], self.keys(doc), algorithms=["RS256", "ES256", "EdDSA"])
        claims = dict(decoded.claims)
        JWTClaimsRegistry(now=int(self.clock.seconds()), leeway=5, iss={"essential": True, "value": ISSUER},
                          exp={"essential": True}, iat={"essential": True}).validate(claims)
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        assert self.photoprism.id in aud
        assert claims.get("azp", self.photoprism.id) == self.photoprism.id
        assert claims["nonce"] == nonce
        digest = hashlib.sha256(tokens["access_token"].encode()).digest()
        assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

        info = self.request("GET", doc["userinfo_endpoint"][len(ISSUER):],
                            headers={"Authorization": "Bearer " + tokens["access_token"]})
        assert info.code == 200, info
        assert info.body["sub"] == claims["sub"]
        assert {k: info.body[k] for k in ("preferred_username", "name", "email", "email_verified")} == {
            "preferred_username": "alice", "name": "Alice Liddell", "email": "alice@example.com",
            "email_verified": True}
        assert info.body["address"] == {"formatted": "1 Rabbit Hole, Oxford"}

    def test_the_documented_recipe(self) -> None:
        """
        docs/photoprism.md's oauthctl line registers what this test uses.
        """
        text = (Path(__file__).parent.parent / "docs" / "photoprism.md").read_text()
        line = text.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert (args.grant_types, args.scope, args.redirect_uris) == (
            ["authorization_code", "refresh_token"], SCOPES,
            ["https://photos.example.com/api/v1/oidc/redirect"])
        assert not args.public and args.pkce is None

    def test_without_an_address_no_address_claim(self) -> None:
        """
        The address scope is granted whether or not the user has one; the
        claim only when there is one.
        """
        self.successResultOf(self.server.store.commit(update_user(self.server.ctx, "alice", address="")))
        shown = self.approve(self.log_in(self.browse("GET", "/api/v1/oauth/authorize?" + urlencode({
            "client_id": self.photoprism.id, "redirect_uri": REDIRECT, "response_type": "code",
            "scope": SCOPES, "state": "s", "code_challenge": challenge("v" * 43),
            "code_challenge_method": "S256"}))))
        reply = self.post("/api/v1/oauth/token", {
            "grant_type": "authorization_code", "code": shown.redirect[1]["code"],
            "redirect_uri": REDIRECT, "code_verifier": "v" * 43},
            auth=(self.photoprism.id, self.photoprism_secret))
        assert reply.code == 200 and set(reply.body["scope"].split()) == set(SCOPES.split()), reply
        info = self.request("GET", "/api/v1/oauth/userinfo",
                            headers={"Authorization": "Bearer " + reply.body["access_token"]})
        assert info.code == 200 and "address" not in info.body, info
