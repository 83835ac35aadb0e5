"""
RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): deciding a
request to C{/api/v1/oauth/logout} without any I/O.

The request names who asks (C{id_token_hint}, an ID token this server
signed, expired or not; and/or C{client_id}), where the browser goes
afterwards (C{post_logout_redirect_uri}, only one the client registered,
with C{state} echoed) and C{ui_locales} (accepted; the pages are English).
Anything wrong is shown on a page (L{ShownError}) and never redirected.

The browser's own session (its cookie) is what ends. A hint whose C{sid}
names that session shows the relying party took part in it: the session
ends at once. Without a hint, or with one naming another session, anyone
could have sent the browser here, so the user confirms first
(L{needs_confirmation}); a browser with no session has nothing to end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

from oauthd.protocol import signing
from oauthd.protocol.authorize import Answer, ShownError
from oauthd.protocol.context import Context
from oauthd.state.authz_records import BrowserEnded, BrowserSession
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import Client

PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")
"""
The parameters the confirmation page carries along; others are ignored.
"""
_MAX_VALUE = 8000


@frozen
class LogoutRequest:
    """
    A valid logout request.

    @ivar client: the relying party that asks, if it said (C{client_id} or
        the hint's audience).
    @ivar redirect_uri: a registered post-logout redirect URI, C{""} for none.
    @ivar sid: the hint's C{sid}, C{""} without a hint or C{sid}.
    @ivar params: the request's own parameters (of L{PARAMETERS}), for the
        confirmation page's hidden fields.
    """

    client: Client | None = None
    redirect_uri: str = ""
    state: str = ""
    sid: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @property
    def answer(self) -> Answer | None:
        """
        Where the browser goes once it is logged out: the relying party's
        page with C{state}, or C{None} for this server's logged-out page.
        """
        if not self.redirect_uri:
            return None
        return Answer(self.redirect_uri, "query", (("state", self.state),) if self.state else ())


def parse(ctx: Context, params: Mapping[str, str]) -> LogoutRequest:
    """
    The logout request C{params} make.

    @raise ShownError: a hint this server did not sign (or not for a client
        it knows), an unknown or disabled client, a client that contradicts
        the hint, a redirect URI that client did not register, or one
        without a client to check it against.
    """
    own = tuple((name, params[name]) for name in PARAMETERS if params.get(name))
    if any(len(value) > _MAX_VALUE for _, value in own):
        raise ShownError("a parameter is too long")
    values = dict(own)
    claims = _hint(ctx, values.get("id_token_hint", ""))
    client_id = values.get("client_id", "")
    if claims is not None:
        audience = _audience(claims)
        if client_id and client_id not in audience:
            raise ShownError("the client is not the one the ID token was issued to", client=client_id[:64])
        client_id = client_id or (audience[0] if len(audience) == 1 else str(claims.get("azp", "")))
    client = ctx.state.clients.get(client_id) if client_id else None
    if client_id and (client is None or not client.enabled):
        raise ShownError("unknown client", client=client_id[:64])
    redirect_uri = values.get("post_logout_redirect_uri", "")
    if redirect_uri and client is None:
        raise ShownError("a post_logout_redirect_uri needs the client_id or an id_token_hint")
    if client is not None and redirect_uri and redirect_uri not in client.post_logout_redirect_uris:
        raise ShownError("the post_logout_redirect_uri is not registered for this client",
                         client=client.id)
    sid = claims.get("sid") if claims is not None else ""
    return LogoutRequest(client, redirect_uri, values.get("state", ""),
                         sid if isinstance(sid, str) else "", own)


def _hint(ctx: Context, hint: str) -> dict[str, Any] | None:
    if not hint:
        return None
    claims = signing.verify(ctx, hint, accept_expired=True)
    if claims is None or claims.get("iss") != ctx.config.issuer:
        raise ShownError("the id_token_hint is not an ID token this server issued")
    return claims


def _audience(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def session_named(ctx: Context, request: LogoutRequest) -> BrowserSession | None:
    """
    The live browser session the hint's C{sid} names: what a logout request
    that came without the browser's cookie ends. Such a request is rare (a
    relying party's cross-site POST) and needs an ID token this server
    signed, so a walk over the live sessions is acceptable here.
    """
    if not request.sid:
        return None
    now = ctx.now()
    for session in list(ctx.state.authz.browsers.values()):
        if session.handle == request.sid and session.live(now):
            return session
    return None


def needs_confirmation(request: LogoutRequest, session: BrowserSession | None) -> bool:
    """
    Whether the user must confirm before C{session} ends: there is one, and
    the hint does not name it.
    """
    return session is not None and request.sid != session.handle


def logout(ctx: Context, request: LogoutRequest, session: BrowserSession | None,
           confirmed: bool = False) -> Decision[Answer | None]:
    """
    End C{session} (if any), audited; the answer is where the browser goes
    (L{LogoutRequest.answer}).
    """
    if session is None:
        return Decision(request.answer)
    client = request.client.id if request.client is not None else ""
    how = "confirmed" if confirmed else "id_token_hint"
    return Decision(request.answer, [BrowserEnded(session.key)], [
        audit("browser.logout", "ok", user=session.user, session=session.handle, client=client, by=how),
    ])
