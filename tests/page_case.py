"""
A browser over the whole server in memory: it keeps the cookies the pages
set, reads their forms, and posts them back as a person would.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from attrs import define

from oauthd.protocol.admin.second_factor import Enrollment, enable
from tests.oauth_helpers import PASSWORD, OAuthCase
from tests.page_helpers import Page, cookie_attributes, read_page

AUTHORIZE = "/api/v1/oauth/authorize"
REDIRECT = "https://gallery.example/callback"
VERIFIER = "v" * 20 + "-._~" + "0123456789" + "abcdefghijklmnop"


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@define
class Shown:
    """
    A response as a browser sees it: status, headers (every value), body,
    and the page parsed.
    """

    code: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def page(self) -> Page:
        return read_page(self.body)

    @property
    def redirect(self) -> tuple[str, dict[str, str]]:
        """
        Where a redirect goes (without its query) and its query parameters.
        """
        assert self.code == 302, (self.code, self.body[:500])
        location = self.header("location") or ""
        parts = urlsplit(location)
        return location.partition("?")[0], dict(parse_qsl(parts.query))


class PageCase(OAuthCase):
    """
    L{OAuthCase} with a public client, Gallery (authorization code with
    PKCE, redirect URI L{REDIRECT}), and a browser's cookie jar.
    """

    def setUp(self) -> None:
        super().setUp()
        self.gallery, _ = self.add_client(
            "Gallery", type="public", scope="openid profile photos albums",
            grant_types=("authorization_code", "refresh_token"), redirect_uris=(REDIRECT,),
        )
        self.jar: dict[str, str] = {}

    # -- the browser ---------------------------------------------------------------

    def browse(self, method: str, path: str, form: Mapping[str, str] | None = None, *,
               body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Shown:
        sent: dict[str, Any] = {"headers": dict(headers or {}), "allow_redirects": False}
        if self.jar:
            sent["headers"]["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if form is not None:
            sent["data"] = urlencode(dict(form)).encode("ascii")
            sent["headers"]["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            sent["data"] = body
        response = self.successResultOf(self.treq.request(method, "http://oauthd.test" + path, **sent))
        data = self.successResultOf(response.content())
        headers = {k.decode().lower(): [v.decode("latin-1") for v in vs]
                   for k, vs in response.headers.getAllRawHeaders()}
        for header in headers.get("set-cookie", []):
            name, value, attributes = cookie_attributes(header)
            if attributes.get("max-age") == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return Shown(response.code, headers, data)

    def authorize(self, **params: str) -> Shown:
        query = {
            "response_type": "code", "client_id": self.gallery.id, "redirect_uri": REDIRECT,
            "scope": "openid photos", "state": "s-1", "code_challenge": challenge(VERIFIER),
            "code_challenge_method": "S256", **params,
        }
        return self.browse("GET", AUTHORIZE + "?" + urlencode({k: v for k, v in query.items() if v}))

    def submit(self, shown: Shown, button: tuple[str, str] | None = None, **values: str) -> Shown:
        form = shown.page.form
        assert (form.action, form.method) == (AUTHORIZE, "post"), form
        return self.browse("POST", AUTHORIZE, form.filled(button, **values))

    def log_in(self, shown: Shown, username: str = "alice", password: str = PASSWORD) -> Shown:
        return self.submit(shown, username=username, password=password)

    def approve(self, shown: Shown) -> Shown:
        assert ("consent", "approve") in shown.page.form.buttons, shown.page.text
        return self.submit(shown, ("consent", "approve"))

    def redeem(self, code: str, verifier: str = VERIFIER, redirect_uri: str = REDIRECT) -> Any:
        return self.post("/api/v1/oauth/token", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, "client_id": self.gallery.id,
        })

    def enable_second_factor(self, name: str) -> Enrollment:
        enrollment: Enrollment = self.successResultOf(
            self.server.store.commit(enable(self.server.ctx, name)))
        return enrollment

    def kind(self, shown: Shown) -> str:
        """
        Which page C{shown} is: login, second-factor, consent, error,
        form-post, or redirect.
        """
        if shown.code == 302:
            return "redirect"
        page = shown.page
        if page.forms and page.forms[0].action != AUTHORIZE:
            return "form-post"
        names = {field.get("name") for form in page.forms for field in form.inputs}
        buttons = {b for form in page.forms for b in form.buttons}
        if "password" in names:
            return "login"
        if "otp" in names:
            return "second-factor"
        if ("consent", "approve") in buttons:
            return "consent"
        return "error"
