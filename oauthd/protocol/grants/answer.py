"""
What every grant answers with, and the scope it may grant.
"""

from __future__ import annotations

from collections.abc import Callable

from oauthd.protocol import errors, scopes
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny, safe_text
from oauthd.protocol.issuing import Minted
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import Client
from oauthd.state.records import Record

class TokenAnswer(dict[str, object]):
    """
    The answer of L{issued}, its keys in that order: the edge writes one
    that still has just those by template rather than encoding a dict
    (L{oauthd.web.site.json_body}).
    """


def issued(
    records: list[Record], client: Client, grant_type: str, ip: str,
    access: Minted, refresh: str = "", id_token: str = "",
    lost: Callable[[], Decision[Body]] | None = None,
) -> Decision[Body]:
    """
    The decision to issue C{access} (and the refresh token whose secret is
    C{refresh}, and an OpenID Connect C{id_token}) with C{records}, and the
    RFC 6749 section 5.1 answer, plus PhotoPrism's keys; C{lost}: see
    L{Decision.lost}.
    """
    token = access.token
    body: Body = TokenAnswer(
        access_token=access.secret, token_type="Bearer", expires_in=token.lifetime, scope=token.scope,
    )
    if refresh:
        body["refresh_token"] = refresh
    if id_token:
        body["id_token"] = id_token
    body["status"] = "success"
    body["session_id"] = access.session_id
    body["client_name"] = client.name
    context: dict[str, object] = {
        "client": client.id, "user": token.user, "token": token.handle, "grant": grant_type,
    }
    event = audit("token.issue", "ok", ip=ip, scope=token.scope,
                  refresh="yes" if refresh else "", id_token="yes" if id_token else "",
                  **context)
    return Decision(body, records, (event,), context=context, lost=lost)


def requested_scope(ctx: Context, params: Params, allowed: str, default: str, **context: object) -> str:
    """
    The normalized C{scope} parameter, which must lie within C{allowed};
    C{default} when absent (RFC 6749 section 3.3).
    """
    raw = params.get("scope", "")
    if not raw.strip():
        return default
    try:
        scope = ctx.scope(raw)
    except scopes.ScopeError as e:
        raise deny(errors.invalid_scope(safe_text(str(e), 100)), reason=e.reason, **context) from None
    if not scopes.within(scope, allowed):
        raise deny(errors.invalid_scope("the requested scope exceeds what may be granted"),
                   scope=scope, **context)
    return scope
