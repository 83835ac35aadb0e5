"""
The pages, as C{twisted.web.template} trees rendered to bytes: one layout
(a card on a quiet background, readable on a phone), and one function per
page. Every value shown is escaped by the flattener; nothing here runs
script, except the C{form_post} page's one static file.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.template import Tag, flattenString, tags

from oauthd.protocol.device import VERIFICATION_PATH
from oauthd.web.pages.words import describe

AUTHORIZE_PATH = "/api/v1/oauth/authorize"
LOGOUT_PATH = "/api/v1/oauth/logout"
DEVICE_PATH = VERIFICATION_PATH
STATIC_PATH = "/api/v1/oauth/static/"
STYLESHEET = STATIC_PATH + "oauthd.css"
FORM_POST_SCRIPT = STATIC_PATH + "form-post.js"

Fields = Sequence[tuple[str, str]]


def render(root: Tag) -> bytes:
    """
    A page's bytes: the HTML5 doctype, then C{root} flattened.
    """
    flattened = flattenString(None, root)
    rendered: list[bytes] = []
    flattened.addCallback(rendered.append)
    # Nothing in these trees waits, so the flattener has finished.
    assert rendered, "a page tree must not wait"
    return b"<!DOCTYPE html>\n" + rendered[0]


def _layout(site: str, title: str, *body: Tag | str, script: str = "") -> bytes:
    head = [
        tags.meta(charset="utf-8"),
        tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
        tags.meta(name="robots", content="noindex"),
        tags.title(f"{title} \u00b7 {site}"),
        tags.link(rel="stylesheet", href=STYLESHEET),
    ]
    if script:
        head.append(tags.script(src=script, defer=""))
    return render(tags.html(lang="en")(
        tags.head(*head),
        tags.body(Tag("main")(class_="card")(
            tags.p(site, class_="site"),
            *body,
        )),
    ))


def _hidden(fields: Fields) -> list[Tag]:
    return [tags.input(type="hidden", name=name, value=value) for name, value in fields]


def _form(fields: Fields, *body: Tag, action: str = AUTHORIZE_PATH) -> Tag:
    return tags.form(method="post", action=action)(*_hidden(fields), *body)


def _error(message: str) -> list[Tag]:
    if not message:
        return []
    return [tags.p(message, class_="error", role="alert", id="form-error")]


def _field(label: str, **attributes: str) -> Tag:
    name = attributes["name"]
    return tags.div(class_="field")(
        tags.label(label, **{"for": name}),
        tags.input(id=name, required="", **attributes),
    )


def login_page(*, site: str, client_name: str, fields: Fields, error: str = "",
               username: str = "", action: str = AUTHORIZE_PATH) -> bytes:
    """
    The login page: user name and password.
    """
    return _layout(
        site, "Sign in",
        tags.h1("Sign in"),
        tags.p("to continue to ", tags.strong(client_name), class_="lead"),
        *_error(error),
        _form(
            fields,
            _field("User name", name="username", type="text", value=username,
                   autocomplete="username", autocapitalize="none", spellcheck="false",
                   **({} if username else {"autofocus": ""})),
            _field("Password", name="password", type="password", autocomplete="current-password",
                   **({"autofocus": ""} if username else {})),
            tags.button("Sign in", type="submit", class_="primary"),
            action=action,
        ),
    )


def second_factor_page(*, site: str, client_name: str, user: str, fields: Fields,
                       error: str = "", action: str = AUTHORIZE_PATH) -> bytes:
    """
    The second step of a login: a code from the user's authenticator app,
    or one of their recovery codes.
    """
    return _layout(
        site, "Two-step verification",
        tags.h1("Two-step verification"),
        tags.p("Signing in as ", tags.strong(user), " to continue to ",
               tags.strong(client_name), ".", class_="lead"),
        *_error(error),
        _form(
            fields,
            _field("Code from your authenticator app", name="otp", type="text",
                   autocomplete="one-time-code", autocapitalize="none", spellcheck="false",
                   autofocus="", maxlength="64", **{"aria-describedby": "otp-help"}),
            tags.p("Lost your phone? Enter one of your recovery codes instead.",
                   class_="help", id="otp-help"),
            tags.button("Verify", type="submit", class_="primary"),
            action=action,
        ),
    )


def consent_page(*, site: str, client_name: str, user: str, scopes: Sequence[str],
                 fields: Fields) -> bytes:
    """
    The consent page: who asks, for what, in plain words.
    """
    return _layout(
        site, f"Allow {client_name}?",
        tags.h1(tags.strong(client_name), " wants to access your account"),
        tags.p("Signed in as ", tags.strong(user), ".", class_="lead"),
        tags.p("It will be able to:"),
        tags.ul(class_="scopes")(*[tags.li(line) for line in describe(scopes)]),
        tags.p("You can take this back at any time by asking your administrator to revoke it.",
               class_="help"),
        _form(
            fields,
            tags.div(class_="actions")(
                tags.button("Allow", type="submit", name="consent", value="approve", class_="primary"),
                tags.button("Deny", type="submit", name="consent", value="deny", class_="secondary"),
            ),
        ),
    )


def error_page(*, site: str, title: str, description: str) -> bytes:
    """
    A request that cannot go back to the client: why, in a sentence.
    """
    return _layout(
        site, title,
        tags.h1(title),
        tags.p(description, class_="error", role="alert"),
        tags.p("Go back to the application you came from and try again. If this keeps "
               "happening, tell its administrator what this page says.", class_="help"),
    )


def form_post_page(*, site: str, client_name: str, redirect_uri: str, params: Fields) -> bytes:
    """
    The answer to a C{response_mode=form_post} request: a form that posts
    C{params} to the client, submitted by a static script where scripts run,
    and by its button where they do not.
    """
    return _layout(
        site, "Returning to the application",
        tags.h1("Returning to ", tags.strong(client_name)),
        tags.form(method="post", action=redirect_uri, id="form-post")(
            *_hidden(params),
            tags.p("If nothing happens, press Continue.", class_="lead"),
            tags.button("Continue", type="submit", class_="primary"),
        ),
        script=FORM_POST_SCRIPT,
    )


def logout_page(*, site: str, client_name: str, user: str, fields: Fields) -> bytes:
    """
    Asking before logging out: the request did not show that the
    application asking took part in this browser's session.
    """
    asking: list[Tag | str] = [" ", tags.strong(client_name), " asks to log you out."] if client_name else []
    return _layout(
        site, "Log out?",
        tags.h1("Log out?"),
        tags.p("Signed in as ", tags.strong(user), ".", *asking, class_="lead"),
        tags.p("If you did not mean to log out, close this page: you stay signed in.", class_="help"),
        _form(
            fields,
            tags.button("Log out", type="submit", name="logout", value="confirm", class_="primary"),
            action=LOGOUT_PATH,
        ),
    )


def logged_out_page(*, site: str) -> bytes:
    """
    The end of a logout with nowhere to go back to.
    """
    return _layout(
        site, "Logged out",
        tags.h1("You are logged out"),
        tags.p("You can close this page.", class_="lead"),
    )


def device_code_page(*, site: str, user: str, fields: Fields, user_code: str = "",
                     error: str = "") -> bytes:
    """
    The device verification page's first step: the code the device shows.
    A code that came in the link is filled in, still to be confirmed.
    """
    return _layout(
        site, "Connect a device",
        tags.h1("Connect a device"),
        tags.p("Signed in as ", tags.strong(user), ". Enter the code your device shows.",
               class_="lead"),
        *_error(error),
        _form(
            fields,
            _field("Code", name="user_code", type="text", value=user_code, autocomplete="off",
                   autocapitalize="characters", spellcheck="false", maxlength="20", autofocus=""),
            tags.button("Continue", type="submit", class_="primary"),
            action=DEVICE_PATH,
        ),
    )


def device_confirm_page(*, site: str, client_name: str, user: str, user_code: str,
                        scopes: Sequence[str], fields: Fields) -> bytes:
    """
    Which client asks, for what, on the device showing C{user_code}: only
    approve if the device in front of you shows this code.
    """
    return _layout(
        site, f"Allow {client_name}?",
        tags.h1(tags.strong(client_name), " wants to access your account"),
        tags.p("Signed in as ", tags.strong(user), ".", class_="lead"),
        tags.p("Only allow this if your device shows the code ", tags.strong(user_code), "."),
        tags.p("It will be able to:"),
        tags.ul(class_="scopes")(*[tags.li(line) for line in describe(scopes)]),
        _form(
            fields,
            tags.div(class_="actions")(
                tags.button("Allow", type="submit", name="consent", value="approve", class_="primary"),
                tags.button("Deny", type="submit", name="consent", value="deny", class_="secondary"),
            ),
            action=DEVICE_PATH,
        ),
    )


def device_done_page(*, site: str, client_name: str, approved: bool) -> bytes:
    title = "Device connected" if approved else "Device not connected"
    said = " can now access your account." if approved else " was denied access."
    return _layout(
        site, title,
        tags.h1(title),
        tags.p(tags.strong(client_name), said, " You can close this page.", class_="lead"),
    )
