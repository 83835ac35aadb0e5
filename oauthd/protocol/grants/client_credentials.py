"""
The client credentials grant (RFC 6749 section 4.4): a confidential client
gets an access token of its own, within its scope and its token limit.
"""

from __future__ import annotations

from oauthd.protocol import errors, id_tokens, signing
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import issued, requested_scope
from oauthd.protocol.issuing import token_limit_records
from oauthd.state.decision import Decision
from oauthd.state.entities import Client


def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    if client.public:
        raise deny(errors.unauthorized_client("a public client cannot use client_credentials"),
                   client=client.id)
    scope = requested_scope(ctx, params, client.scope, client.scope, client=client.id)
    if client.user:
        owner = ctx.state.users.get(client.user)
        if owner is None or owner.disabled:
            raise deny(errors.unauthorized_client("the client's user is disabled"),
                       client=client.id, user=client.user)
    access = id_tokens.access_token(ctx, client, scope=scope, lifetime=client.access_ttl,
                                    user=client.user)
    records = token_limit_records(ctx, client)
    records += [access.record, *signing.pending(ctx)]
    return issued(records, client, "client_credentials", ip, access)
