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
from oauthd.state.families import EXPIRY_BUCKET, Family
from oauthd.state.records import RefreshUsed, TokenIssued, TokenRevoked
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
    Apply C{record} to C{state}.

    @return: whether in one pass (else its parts were applied one by one).
    """
    leaving = _leaving(state, record)
    if leaving is None:
        state.apply(parts(record), now)
        return False
    family = state.families.get(record.access.grant)
    assert family is not None
    _leave(state, leaving, family)
    used = leaving[0]
    owners = state._owners(used.client_id, used.user)
    if owners is not None:
        _take(state, owners, record.access, record.refresh, family)
    return True


def _leaving(state: State, record: TokenRotated) -> list[Token] | None:
    """
    The tokens C{record} takes out, the used one first, if its rotation
    can be applied in one pass: the used token is a refresh token held, of
    a live family, and every token it takes out or puts in is of its
    client, user and grant (each revoked one an access token); else C{None}.
    """
    rows = state._rows
    row = rows.get(record.used)
    if row is None:
        return None
    used = row if type(row) is Token else parse_token(row)
    access, refresh = record.access, record.refresh
    grant, client_id, user = used.grant, used.client_id, used.user
    if (used.kind != REFRESH or access.kind != ACCESS or refresh.kind != REFRESH or access.grant != grant
            or refresh.grant != grant or access.client_id != client_id or refresh.client_id != client_id
            or access.user != user or refresh.user != user or state.families.get(grant) is None):
        return None
    leaving = [used]
    for key in record.revoked:
        row = rows.get(key)
        if row is not None:
            token = row if type(row) is Token else parse_token(row)
            if token.kind != ACCESS or token.grant != grant or token.client_id != client_id or token.user != user:
                return None
            leaving.append(token)
    return leaving


def _leave(state: State, leaving: list[Token], family: Family) -> None:
    """
    The tokens C{leaving}, the used refresh token first and then access
    tokens, all of C{family}'s client, user and grant, leave the state.
    """
    rows = state._rows
    gone = 0
    for token in leaving:
        if rows.pop(token.key, None) is not None:  # (a key revoked twice goes once)
            gone += 1
    state.families.spend(family, leaving[0].key)
    if gone > 1 and family.access:
        family.access = max(0, family.access - (gone - 1))
    state.token_order.removed(gone)
    used = leaving[0]
    lists = state._lists
    client_id, user = used.client_id, used.user
    if client_id:
        _count_out(lists.client_count, client_id, gone)
        lists.by_client.gone(client_id, rows, gone)
    if user:
        _count_out(lists.user_count, user, gone)
        lists.by_user.gone(user, rows, gone)
    lists.by_grant.gone(family.grant, rows, gone)


def _count_out(counts: dict[str, int], name: str, gone: int) -> None:
    left = counts[name] - gone
    if left:
        counts[name] = left
    else:
        del counts[name]


def _take(state: State, owners: tuple[str, str], access: Token, refresh: Token, family: Family) -> None:
    """
    C{access} and C{refresh}, of C{family}'s grant, are taken in (each
    unless its key is held or used already), owned by C{owners}.
    """
    rows = state._rows
    spent = state.families.spent
    client_id, user = owners
    lists = state._lists
    by_client, by_user, by_grant, expiry = lists.by_client, lists.by_user, lists.by_grant, state._expiry
    grant = family.grant
    for token in (access, refresh):
        key = token.key
        if key in rows or key in spent:
            continue
        token.client_id, token.user = owners
        lifetime = token.lifetime
        expires_at = token.issued_at + lifetime if lifetime else 0
        if token.issued_at < family.started:
            family.started = token.issued_at
        ends = family.expires_at
        if ends and (not expires_at or expires_at > ends):
            family.expires_at = expires_at
        if token is access:
            family.took_access(expires_at)
        rows[key] = token
        state._taken(key)
        # Straight-line, as State._index: a list made when its name has none.
        if client_id:
            listed = by_client.get(client_id)
            if listed is None:
                listed = by_client[client_id] = []
            listed.append(key)
            counts = lists.client_count
            counts[client_id] = counts.get(client_id, 0) + 1
        if user:
            listed = by_user.get(user)
            if listed is None:
                listed = by_user[user] = []
            listed.append(key)
            counts = lists.user_count
            counts[user] = counts.get(user, 0) + 1
        listed = by_grant.get(grant)
        if listed is None:
            listed = by_grant[grant] = []
        listed.append(key)
        if expires_at:
            minute = expires_at // EXPIRY_BUCKET
            listed = expiry.get(minute)
            if listed is None:
                listed = expiry[minute] = []
            listed.append(key)
