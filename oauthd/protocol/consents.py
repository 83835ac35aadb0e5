"""
Users' remembered consents (which client may have which scope, given on the
authorization endpoint's consent page), as an admin sees and revokes them.
"""

from __future__ import annotations

from oauthd.protocol.admin.clients import client as _client
from oauthd.protocol.admin.users import user
from oauthd.protocol.context import Context
from oauthd.protocol.errors import NotFound
from oauthd.protocol.issuing import from_app_password
from oauthd.state.authz_records import Consent, ConsentRevoked
from oauthd.state.decision import Decision
from oauthd.state.records import GrantRevoked, Record


def user_consents(ctx: Context, name: str) -> list[Consent]:
    """
    The consents user C{name} gave, by client id.

    @raise NotFound: if there is no such user.
    """
    user(ctx, name)
    return sorted(ctx.state.authz.consents.get(name, {}).values(), key=lambda c: c.client_id)


def revoke_consent(ctx: Context, name: str, client_id: str) -> Decision[Consent]:
    """
    Forget that user C{name} consented to client C{client_id}, and revoke
    the grants (token families) the client holds for the user: the next
    authorization request asks again. Tokens obtained with one of the
    user's app passwords are the app password's, and stay.

    @raise NotFound: if the user, or the consent, does not exist.
    """
    user(ctx, name)
    _client(ctx, client_id)
    held = ctx.state.authz.consent(name, client_id)
    if held is None:
        raise NotFound(f"user {name} has not consented to client {client_id[:40]}")
    grants = {
        token.grant: None for token in ctx.state.user_tokens(name, ctx.now())
        if token.client_id == client_id and token.grant and not from_app_password(token)
    }
    records: list[Record] = [ConsentRevoked(name, client_id), *map(GrantRevoked, grants)]
    return Decision(held, records)
