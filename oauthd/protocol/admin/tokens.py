"""
Tokens issued and revoked by hand (C{oauthctl auth add} / C{auth rm}).
"""

from __future__ import annotations

from oauthd.protocol import scopes
from oauthd.protocol.admin.clients import client
from oauthd.protocol.admin.users import user
from oauthd.protocol.context import Context
from oauthd.protocol.errors import InvalidValue
from oauthd.protocol.issuing import (
    Minted,
    from_app_password_label,
    mint,
    revocation_records,
    token_limit_records,
)
from oauthd.protocol.rules import check_label, check_lifetime
from oauthd.state.decision import Decision
from oauthd.state.entities import ACCESS, APP_PASSWORD, Client, Token
from oauthd.state.records import Record, TokenUses


def issue(
    ctx: Context, *, scope: str, lifetime: int, client: Client | None = None, user: str = "",
    label: str = "", kind: str = ACCESS,
) -> Decision[Minted]:
    """
    Issue one token, revoking the client's oldest if it would exceed its
    limit.
    """
    minted = mint(ctx, kind, scope=scope, lifetime=lifetime,
                  client_id=client.id if client else "", user=user, label=label)
    records: list[Record] = []
    if client is not None and kind == ACCESS:
        records = token_limit_records(ctx, client)
    records.append(minted.record)
    return Decision(minted, records)


MAX_USES = 1000
"""
The most registrations one limited initial access token may allow.
"""


def issue_by_hand(
    ctx: Context, *, label: str, scope: str, lifetime: int, user_name: str = "", client_id: str = "",
    uses: int | None = None,
) -> Decision[Minted]:
    """
    Issue a token as an admin: an app password when C{user_name} is given,
    else an access token, bound to C{client_id} if given (and then within
    that client's scope and token limit).

    @param lifetime: seconds, or 0 for a token that never expires.
    @param uses: for an initial access token (scope C{register}, owned by
        no user or client), how many registrations it allows before it is
        revoked; C{None} for no limit.
    @raise AdminError: on a bad value or an unknown or disabled user or
        client.
    """
    label = check_label("token name", label)
    if from_app_password_label(label):
        raise InvalidValue("a token name must not start with 'from ': that links tokens to app passwords")
    lifetime = check_lifetime("token lifetime", lifetime, allow_never=True)
    try:
        scope = ctx.scope(scope)
    except scopes.ScopeError as e:
        raise InvalidValue(str(e)) from None
    if not scope:
        raise InvalidValue("the scope must not be empty")
    if user_name and client_id:
        raise InvalidValue("a token is for a user or for a client, not both")
    if uses is not None:
        if not 1 <= uses <= MAX_USES:
            raise InvalidValue(f"the number of uses must be 1 to {MAX_USES}")
        if user_name or client_id or "register" not in scopes.names(scope):
            raise InvalidValue("only an initial access token (--scope register, no --user or --client) has uses")
        issued = issue(ctx, scope=scope, lifetime=lifetime, label=label)
        return Decision(issued.answer, [*issued.records, TokenUses(issued.answer.token.key, uses)])
    if user_name:
        if user(ctx, user_name).disabled:
            raise InvalidValue(f"user {user_name} is disabled")
        return issue(ctx, scope=scope, lifetime=lifetime, user=user_name, label=label,
                     kind=APP_PASSWORD)
    owner = None
    if client_id:
        owner = client(ctx, client_id)
        if not owner.enabled:
            raise InvalidValue(f"client {client_id} is disabled")
        if not scopes.within(scope, owner.scope):
            raise InvalidValue(f"scope {scope[:80]!r} exceeds the client's scope {owner.scope[:80]!r}")
    return issue(ctx, scope=scope, lifetime=lifetime, client=owner, label=label)


def revoke(ctx: Context, token: Token) -> Decision[Token]:
    """
    Revoke C{token} and what goes with it.
    """
    return Decision(token, revocation_records(ctx, token))


def matches(token: Token, search: str) -> bool:
    """
    Whether a listing filtered by C{search} shows C{token}: its handle,
    client, user or label starts with C{search} (every token if empty).
    """
    return not search or any(
        field.startswith(search) for field in (token.handle, token.client_id, token.user, token.label)
    )
