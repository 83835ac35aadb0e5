"""
The pages' machinery on its own: the templates (labelled, language set,
phone-ready, everything escaped, no inline script or style), the CSP
sources for redirect URIs, the CSRF token, and the static files.
"""

from __future__ import annotations

import re

from oauthd.web.pages import security, views
from oauthd.web.pages import static as static_files
from oauthd.web.pages.words import describe
from tests.oauth_helpers import OAuthCase
from tests.page_helpers import read_page

HOSTILE = '<script>alert("x")</script>&"\''
FIELDS = [("client_id", "abc"), ("state", HOSTILE), (security.CSRF_FIELD, "t" * 64)]


def all_pages() -> dict[str, bytes]:
    return {
        "login": views.login_page(site="auth.example.com", client_name=HOSTILE, fields=FIELDS),
        "login-error": views.login_page(site="auth.example.com", client_name="App", fields=FIELDS,
                                        error=HOSTILE, username=HOSTILE),
        "second-factor": views.second_factor_page(site="auth.example.com", client_name="App",
                                                  user="alice", fields=FIELDS, error="wrong"),
        "consent": views.consent_page(site="auth.example.com", client_name=HOSTILE, user="alice",
                                      scopes=["openid", "photos", HOSTILE], fields=FIELDS),
        "error": views.error_page(site="auth.example.com", title="Unknown application",
                                  description=HOSTILE),
        "form-post": views.form_post_page(site="auth.example.com", client_name="App",
                                          redirect_uri="https://app.example/cb",
                                          params=[("code", "c"), ("state", HOSTILE)]),
    }


class TemplateTests(OAuthCase):
    def test_every_page_is_readable_and_labelled(self) -> None:
        for name, html in all_pages().items():
            page = read_page(html)
            assert html.startswith(b"<!DOCTYPE html>"), name
            assert page.lang == "en", name
            assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.metas, name
            assert [link["href"] for link in page.links] == [views.STYLESHEET], name
            for form in page.forms:
                for field in form.inputs:
                    if field["type"] not in ("hidden",):
                        assert page.labels.get(field["id"], "").strip(), (name, field)

    def test_nothing_inline_and_everything_escaped(self) -> None:
        for name, html in all_pages().items():
            text = html.decode("utf-8")
            assert "<script>" not in text and " style=" not in text and "<style" not in text, name
            assert re.search(r"\son[a-z]+=", text) is None, name
            page = read_page(html)
            for script in page.scripts:
                assert script["src"] == views.FORM_POST_SCRIPT, name

    def test_hostile_values_come_back_as_text(self) -> None:
        page = read_page(all_pages()["consent"])
        assert HOSTILE in page.text
        assert page.form.fields["state"] == HOSTILE
        assert page.form.buttons == [("consent", "approve"), ("consent", "deny")]

    def test_form_post_posts_to_the_client_and_has_a_button(self) -> None:
        page = read_page(all_pages()["form-post"])
        assert (page.form.action, page.form.method) == ("https://app.example/cb", "post")
        assert page.form.fields == {"code": "c", "state": HOSTILE}
        assert page.form.buttons == [("", "")]

    def test_scopes_in_plain_words(self) -> None:
        assert describe(["openid", "email", "odd"]) == [
            "Know who you are (your account name)", "See your email address",
            "Access named \u201codd\u201d"]


class PolicyTests(OAuthCase):
    def test_redirect_sources(self) -> None:
        cases = {
            "https://app.example/cb?x=1": "https://app.example",
            "https://App.Example:8443/cb": "https://app.example:8443",
            "http://127.0.0.1:51004/callback": "http://127.0.0.1:51004",
            "http://[::1]:8080/cb": "http://[::1]:8080",
            "com.example.app:/oauth2redirect": "com.example.app:",
            "https://app.example;script-src *": None,
            "https://app.example:99999/": None,
            "https://a b/": None,
            "1bad:/x": None,
        }
        for uri, source in cases.items():
            assert security.redirect_source(uri) == source, uri

    def test_content_security_policy(self) -> None:
        assert security.content_security_policy(["https://app.example"]) == (
            "default-src 'none'; style-src 'self'; form-action 'self' https://app.example; "
            "frame-ancestors 'none'; base-uri 'none'")
        assert "script-src 'self'" in security.content_security_policy(script=True)

    def test_csrf_token_depends_on_the_cookie(self) -> None:
        one, two = "a" * 64, "b" * 64
        assert security.csrf_token(one) == security.csrf_token(one)
        assert security.csrf_token(one) != security.csrf_token(two)
        assert one not in security.csrf_token(one)


class StaticTests(OAuthCase):
    def test_stylesheet_and_script_are_served(self) -> None:
        css = self.request("GET", views.STYLESHEET)
        assert css.code == 200
        assert css.header("content-type") == "text/css; charset=utf-8"
        assert b"font" in css.body
        js = self.request("GET", views.FORM_POST_SCRIPT)
        assert js.code == 200
        assert js.header("content-type") == "text/javascript; charset=utf-8"
        assert js.header("x-content-type-options") == "nosniff"

    def test_text_is_at_least_16px(self) -> None:
        css = self.request("GET", views.STYLESHEET).body.decode()
        sizes = re.findall(r"font-size:\s*([0-9.]+)(rem|px|em)", css)
        assert sizes
        for value, unit in sizes:
            assert float(value) * (1 if unit == "px" else 16) >= 16, (value, unit)

    def test_unknown_static_file(self) -> None:
        for path in ("nothing.css", "..%2Fapi.py", "__init__.py"):
            reply = self.request("GET", views.STATIC_PATH + path)
            assert reply.code == 404, path


def test_every_static_file_is_packaged() -> None:
    """
    setup.cfg's package_data names every static file, so a plain (not
    editable) C{pip install .} serves the same pages.
    """
    import configparser
    import fnmatch
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    setup = configparser.ConfigParser()
    setup.read(repo / "setup.cfg")
    patterns = [p.strip() for p in setup["options.package_data"]["oauthd.web.pages"].split(",")]
    static = repo / "oauthd" / "web" / "pages" / "static"
    files = sorted(p.name for p in static.iterdir() if p.is_file())
    assert files == sorted(static_files.FILES)
    for name in files:
        assert any(fnmatch.fnmatch(f"static/{name}", pattern) for pattern in patterns), name
