"""
A refresh token's rotation (L{TokenRotated}) applied to the state in one
pass: every token it takes out or puts in is of one grant, so its client's,
user's and grant's lists, counts and family are each looked up and changed
once, not once per token.

The state it leaves holds what applying its parts one after the other
(L{parts}) leaves: the same tokens, families, counts and listings
(tests/test_rotation.py compares the two). Where the state leaves any doubt
(the used token not a refresh token of that grant, its family ended, a
revoked token of another grant), the parts are applied one by one instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oauthd.state.entities import ACCESS, REFRESH, Token
from oauthd.state.families import EXPIRY_BUCKET
from oauthd.state.records import RefreshUsed, TokenIssued, TokenRevoked, encode
from oauthd.state.rotation_records import TokenRotated
from oauthd.state.rows import parse_token

if TYPE_CHECKING:
    from oauthd.state.model import State


def parts(record: TokenRotated) -> list[RefreshUsed | TokenRevoked | TokenIssued]:
    """
    The records that do what C{record} does, one after the other (as
    journals written before L{TokenRotated} hold a rotation).
    """
    return [RefreshUsed(record.used), *map(TokenRevoked, record.revoked),
            TokenIssued(record.access), TokenIssued(record.refresh)]


def rotate(state: State, record: TokenRotated, now: float) -> bool:
    """
    Apply C{record} to C{state}: in one pass, unless its parts may do
    anything else than that pass does: its used token is not a refresh
    token held, of a live family, of the owners and grant of the new
    tokens; a revoked token held is not an access token of them; a new key
    is held or used already; the owners are gone or disabled.

    @return: whether in one pass (else its parts were applied one by one).
    """
    rows = state._rows
    row = rows.get(record.used)
    if row is None:
        return _by_parts(state, record, now)
    used = row if type(row) is Token else parse_token(row)
    access = record.access
    grant, client_id, user = used.grant, used.client_id, used.user
    family = state.families.get(grant)
    spent = state._spent
    new, newer = access.key, record.refresh.key
    if (family is None or used.kind != REFRESH or access.grant != grant or access.client_id != client_id
            or access.user != user or new in rows or newer in rows or new in spent or newer in spent
            or new == newer):
        return _by_parts(state, record, now)
    leaving = [record.used]
    for key in record.revoked:
        row = rows.get(key)
        if row is not None:
            token = row if type(row) is Token else parse_token(row)
            if token.kind != ACCESS or token.grant != grant or token.client_id != client_id or token.user != user:
                return _by_parts(state, record, now)
            leaving.append(key)
    owners = state._owners(client_id, user)
    if owners is None:
        return _by_parts(state, record, now)
    gone = 0
    for key in leaving:
        if rows.pop(key, None) is not None:  # (a key revoked twice goes once)
            gone += 1
    state.families.spend(family, record.used)
    if gone > 1 and family.access:
        left = family.access - (gone - 1)
        family.access = left if left > 0 else 0
    refresh = record.refresh
    # Names are shared with the client and user from here on.
    access.client_id, access.user = refresh.client_id, refresh.user = owners
    added = (access.key, refresh.key)
    rows[added[0]] = access
    rows[added[1]] = refresh
    order = state.token_order
    order.removed(gone)
    order.add_all(added)
    client_id, user = owners
    lists = state._lists
    if client_id:
        lists.by_client.replaced(client_id, rows, gone, added)
        lists.client_count[client_id] += 2 - gone
    if user:
        lists.by_user.replaced(user, rows, gone, added)
        lists.user_count[user] += 2 - gone
    lists.by_grant.replaced(family.grant, rows, gone, added)
    # (Issued at the same time: TokenRotated checks it.)
    if access.issued_at < family.started:
        family.started = access.issued_at
    for token in (access, refresh):
        lifetime = token.lifetime
        expires_at = token.issued_at + lifetime if lifetime else 0
        ends = family.expires_at
        if ends and (not expires_at or expires_at > ends):
            family.expires_at = expires_at
        if expires_at:
            minute = expires_at // EXPIRY_BUCKET
            listed = state._expiry.get(minute)
            if listed is None:
                listed = state._expiry[minute] = []
            listed.append(token.key)
    family.took_access(access.issued_at + access.lifetime if access.lifetime else 0)
    return True


def replayed(state: State, record: TokenRotated, now: float, replaying: bool) -> None:
    """
    Apply C{record} as replay (L{State.load}) applies its parts: a new
    token that expired before C{now} is not taken in, and with
    C{replaying} one taken in is held as its C{tok} payload, as a C{tok}
    line's token is (a payload costs less memory than a L{Token}).
    """
    if record.access.live(now) and record.refresh.live(now):
        rotate(state, record, now)
    else:
        state.apply([part for part in parts(record) if type(part) is not TokenIssued or part.token.live(now)], now)
    if replaying:
        rows = state._rows
        for token in (record.access, record.refresh):
            if rows.get(token.key) is token:
                rows[token.key] = encode(TokenIssued(token))


def _by_parts(state: State, record: TokenRotated, now: float) -> bool:
    """
    Apply C{record}'s parts one by one (L{rotate}'s way out).
    """
    state.apply(parts(record), now)
    return False
