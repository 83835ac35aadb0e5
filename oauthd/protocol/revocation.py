"""
Revocation (RFC 7009), and PhotoPrism's self-revocation with the token in a
header.
"""

from __future__ import annotations

from oauthd.protocol import errors, scopes, tokens
from oauthd.protocol.bearer import bearer
from oauthd.protocol.clientauth import ClientAuth, identify_client
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import OAuthError, deny
from oauthd.protocol.issuing import from_app_password, revocation_records
from oauthd.protocol.lookup import authenticate_token
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import SESSION, Token, is_handle
from oauthd.state.records import GrantRevoked

DELETED: Body = {"status": "deleted"}


def revoke(ctx: Context, params: Params, auth: ClientAuth, presented: str | None, ip: str) -> Decision[Body]:
    """
    Revoke a token. A client authenticates (or a public one identifies
    itself) and may revoke only its own tokens; without client credentials,
    PhotoPrism's way: the token in the header revokes itself (empty body),
    or names another token of the same user to revoke (by value, session id
    or handle) if it has full scope.

    Whatever is named, found or not, the answer is 200 (RFC 7009 section
    2.2): only the audit tells them apart. C{token_type_hint} is not needed:
    every token is found by its value alone.
    """
    target = params.get("token", "")
    client = identify_client(ctx, auth, ip)
    if client is not None:
        if not target:
            raise deny(errors.invalid_request("token is required"), client=client.id)
        token = authenticate_token(ctx, target)
        if token is None:
            return _used_refresh_token(ctx, target, client.id, ip)
        if token.client_id != client.id:
            return Decision(dict(DELETED), audit=(audit(
                "token.revoke", "denied", client=client.id, ip=ip, token=token.handle,
                reason="another client's token"),))
        return revoking(ctx, token, ip, client.id, dict(DELETED))
    if presented is None:
        raise deny(errors.invalid_client("client authentication is required", False), ip=ip)
    caller = bearer(ctx, presented, ip)
    if not target:
        _not_a_login_session(caller, ip)
        return revoking(ctx, caller, ip, "self", {**DELETED, "session_id": tokens.session_id(presented)})
    token = _find_own(ctx, target, caller)
    if token is None:
        return Decision(dict(DELETED), audit=(audit(
            "token.revoke", "denied", ip=ip, user=caller.user, by=caller.handle,
            reason="unknown token or not the caller's"),))
    _not_a_login_session(token, ip)
    return revoking(ctx, token, ip, caller.handle, dict(DELETED))


def _not_a_login_session(token: Token, ip: str) -> None:
    """
    Refuse to end a browser login session here, as PhotoPrism does (403):
    logging out is C{DELETE /api/v1/session}. Sessions opened with an app
    password belong to that app and may be revoked.
    """
    if token.kind == SESSION and not from_app_password(token):
        raise deny(OAuthError("access_denied", "a login session ends with DELETE /api/v1/session", 403),
                   ip=ip, user=token.user, token=token.handle)


def _used_refresh_token(ctx: Context, target: str, client_id: str, ip: str) -> Decision[Body]:
    """
    Revocation of what is not a token: a used refresh token revokes its
    family, as any refresh token does (RFC 7009 section 2.1), if it is the
    client's; anything else changes nothing.
    """
    key = tokens.token_key(target) if tokens.is_access_token(target) else None
    family = ctx.state.used_family(key) if key is not None else None
    if key is None or family is None:
        return Decision(dict(DELETED), audit=(audit(
            "token.revoke", "ok", client=client_id, ip=ip, reason="unknown token"),))
    name = tokens.handle(key)
    if family.client_id != client_id:
        return Decision(dict(DELETED), audit=(audit(
            "token.revoke", "denied", client=client_id, ip=ip, token=name, reason="another client's token"),))
    context: dict[str, object] = {"client": client_id, "user": family.user, "token": name}
    done = audit("token.revoke", "ok", ip=ip, kind="refresh-used", by=client_id, family="yes", **context)
    return Decision(dict(DELETED), [GrantRevoked(family.grant)], (done,), context=context)


def _find_own(ctx: Context, reference: str, caller: Token) -> Token | None:
    """
    The token named by C{reference} (its value, session id or handle) if
    C{caller} may revoke it: itself, or any of its user's tokens if the
    caller has full scope. Handles are looked up among the caller's user's
    tokens only, never by a scan of all.
    """
    key = tokens.key_from_session_id(reference)
    if key is not None:
        token = ctx.state.token(key, ctx.now())
    elif is_handle(reference):
        token = caller if caller.handle == reference else None
        if token is None and caller.user:
            token = next((t for t in ctx.state.user_tokens(caller.user, ctx.now())
                          if t.handle == reference), None)
    else:
        token = authenticate_token(ctx, reference)
    if token is None:
        return None
    if token.key == caller.key:
        return token
    if caller.user and token.user == caller.user and scopes.ALL in scopes.names(caller.scope):
        return token
    return None


def revoking(ctx: Context, token: Token, ip: str, by: str, body: Body) -> Decision[Body]:
    """
    The decision to revoke C{token} (and what goes with it), answering
    C{body}.
    """
    records = revocation_records(ctx, token)
    context: dict[str, object] = {"client": token.client_id, "user": token.user, "token": token.handle}
    done = audit("token.revoke", "ok", ip=ip, kind=token.kind, by=by,
                 family="yes" if isinstance(records[0], GrantRevoked) else "", **context)
    return Decision(body, records, (done,), context=context)
