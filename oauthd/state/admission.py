"""
Whether a record of the shared log is applied at its position, the same
answer on every node (L{oauthd.state.follower}): what it creates still has
its client and user, what it uses up is still there.
"""

from __future__ import annotations

from oauthd.state.audit_records import PREFIX as AUDIT_PREFIX
from oauthd.state.authz_records import BrowserStarted, CodeIssued, CodeRedeemed, HalfLoginStarted
from oauthd.state.device import APPROVED, DENIED, PENDING, REDEEMED, DevicePut
from oauthd.state.entities import REFRESH
from oauthd.state.model import State
from oauthd.state.records import (
    RecoveryCodeUsed, Record, RefreshUsed, TokenIssued, TokenRevoked, TotpStepUsed, UserPut, decode,
)
from oauthd.state.rotation_records import TokenRotated

_STAGE = {PENDING: 0, APPROVED: 1, DENIED: 1, REDEEMED: 2}


def _enabled(state: State, user: str) -> bool:
    held = state.users.get(user)
    return held is not None and not held.disabled


def admitted(state: State, record: Record) -> bool:
    """
    Whether C{record} may be applied to C{state}, the state at its log
    position: what it creates still has its client and user, what it uses
    up is still there.  The same answer on every node, which all hold the
    same state there, whenever each applies it (no clock is read).  What
    ends or revokes something is always admitted (it does nothing to what
    is already gone).
    """
    match record:
        case TokenIssued(token=token):
            if token.key in state.tokens or token.key in state.families.spent:
                return False
            if not state.may_issue(token.client_id, token.user):
                return False
            client = state.clients.get(token.client_id)
            if client is None or client.max_tokens <= 0 or token.own:
                return True  # a client's own token makes room (_room_for)
            if token.grant and token.user and state.families.get(token.grant) is None:
                # A new grant, against the client's grants per user.
                grants = {t.grant for t in state.user_tokens(token.user, token.issued_at + 1)
                          if t.client_id == client.id and t.grant}
                return len(grants) < client.max_tokens
            return True
        case RefreshUsed(key=key):
            # Still held, whatever the clock reads here: its expiry was checked
            # when it was decided, and its grant's claim makes the use single.
            return key in state.tokens and state.tokens[key].kind == REFRESH
        case TokenRotated(used=key, access=access, refresh=refresh):
            # Whole or not at all: each of its parts that could be dropped.
            return all(admitted(state, part)
                       for part in (RefreshUsed(key), TokenIssued(access), TokenIssued(refresh)))
        case CodeIssued(code=code):
            client = state.clients.get(code.client_id)
            return _enabled(state, code.user) and client is not None and client.enabled
        case CodeRedeemed(key=key):
            issued = state.authz.codes.get(key)
            return issued is not None and not issued.redeemed
        case BrowserStarted(session=session):
            return _enabled(state, session.user)
        case HalfLoginStarted(half=half):
            return _enabled(state, half.user)
        case DevicePut(code=code):
            # Written whole, the latest wins: a poll decided on a node that
            # had not seen the user's approval must not undo it.
            device = state.authz.devices.codes.get(code.key)
            return device is None or _STAGE[code.status] >= _STAGE[device.status]
        case TotpStepUsed(user=name, step=step):
            # Each step once, and only later than the last one accepted.
            factor = state.second_factors.get(name)
            return factor is not None and step > factor.last_step
        case RecoveryCodeUsed(user=name, digest=digest):
            factor = state.second_factors.get(name)
            return factor is not None and digest in factor.recovery
        case UserPut(user=user):
            # A name another node created first (another subject id) is
            # taken; an update keeps the subject id.
            held = state.users.get(user.name)
            return held is None or not (held.uid and user.uid) or held.uid == user.uid
    return True


def apply_at(state: State, payload: bytes, now: float, made_room: list[Record] | None = None) -> bool | None:
    """
    Apply the record C{payload}, at its log position, to C{state} (the state
    there) if it is admitted there, as every node does; an C{audit} record
    changes nothing (L{oauthd.state.audit_relay.AuditRelay} reads it).

    @param made_room: given, it gets the revocations applied before the
        record to make room for it (L{_room_for}), which the log does not hold.
    @return: whether it was applied; C{None} if it is malformed.
    """
    if payload.startswith(AUDIT_PREFIX):
        return True
    try:
        record = decode(payload)
    except ValueError:
        return None
    if not admitted(state, record):
        return False
    room = _room_for(state, record)
    state.apply([*room, record], now)
    if made_room is not None:
        made_room += room
    return True


def _room_for(state: State, record: Record) -> list[Record]:
    """
    Revocations of a client's oldest own tokens that leave room for the one
    C{record} issues: decisions made at once (on two nodes, or on one before
    the log delivered the other) each evicted the same oldest token; the
    later token still goes in, as one after the other would have.
    """
    if type(record) is TokenIssued and record.token.own:
        client = state.clients.get(record.token.client_id)
        if client is not None and client.max_tokens >= 0:
            oldest = state.own_beyond(client.id, client.max_tokens, record.token.issued_at)
            return [TokenRevoked(t.key) for t in oldest]
    return []
