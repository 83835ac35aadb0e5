"""
A refresh token's rotation as one record (L{TokenRotated}): its bytes, and
that applying it (in one pass, L{oauthd.state.rotation}), replaying it, or
following it on a shared log leaves what its parts, the four kinds of record
journals written before it hold, leave one after the other.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from oauthd.eventlog import MemoryJournal
from oauthd.services.audit import log_audit

from oauthd.state import rotation
from oauthd.state.admission import apply_at
from oauthd.state.entities import ACCESS, REFRESH, Client, Token, User
from oauthd.state.follower import implied_claims
from oauthd.state.model import State, replay
from oauthd.state.records import (
    ClientPut, GrantRevoked, Record, RefreshUsed, TokenIssued, TokenRevoked, UserPut, decode, encode,
)
from oauthd.state.rotation_records import TokenRotated
from oauthd.state.store import Store
from tests.helpers import START, change

GRANTS = ("g1", "g2", "g3")
USERS = ("alice", "bob")


def _token(key: int, kind: str, grant: str, user: str, issued_at: int, lifetime: int, label: str = "",
           client_id: str = "c1", scope: str = "openid profile") -> Token:
    return Token(key, kind, client_id, user, scope, issued_at, lifetime, grant, label)


GOLDEN = (
    b"rot\t0000000000000000000000000000000a\t0000000000000000000000000000000b,0000000000000000000000000000000c"
    b"\t0000000000000000000000000000000d\tc1\talice\topenid\t1800000000\t600\tg1\tfrom sess0000000000"
    b"\t0000000000000000000000000000000e\topenid profile\t86400"
)


def _golden_record() -> TokenRotated:
    return TokenRotated(
        10, (11, 12),
        _token(13, ACCESS, "g1", "alice", START, 600, "from sess0000000000", scope="openid"),
        _token(14, REFRESH, "g1", "alice", START, 86400, "from sess0000000000"),
    )


def test_a_rotation_is_one_line_of_its_fields() -> None:
    """
    A rotation is written as the module's docstring describes, and read
    back to the same record; one without revocations has an empty field.
    """
    record = _golden_record()
    assert encode(record) == GOLDEN
    read = decode(GOLDEN)
    assert isinstance(read, TokenRotated)
    assert (read.used, read.revoked) == (10, (11, 12))
    for name in Token.__slots__:
        assert getattr(read.access, name) == getattr(record.access, name), name
        assert getattr(read.refresh, name) == getattr(record.refresh, name), name
    alone = TokenRotated(10, (), record.access, record.refresh)
    assert encode(alone).split(b"\t")[2] == b""
    again = decode(encode(alone))
    assert isinstance(again, TokenRotated) and again.revoked == () and again.used == 10


@pytest.mark.parametrize("payload", [
    GOLDEN.rsplit(b"\t", 1)[0],  # a field short
    GOLDEN + b"\t1",  # one too many
    GOLDEN.replace(b"\t0000000000000000000000000000000a", b"\tzz"),
    GOLDEN.replace(b",0000000000000000000000000000000c", b",x"),
    GOLDEN.replace(b"\t600\t", b"\t-600\t"),
    GOLDEN.replace(b"\t1800000000\t", b"\tsoon\t"),
])
def test_a_malformed_rotation_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError, match="malformed rot record"):
        decode(payload)
    with pytest.raises(ValueError, match="record 2: malformed rot record"):
        State().load([encode(ClientPut(Client(id="c1", name="one"))), payload], START)


@pytest.mark.parametrize("change", [
    {"refresh": _token(14, REFRESH, "g2", "alice", START, 0)},  # another grant
    {"refresh": _token(14, REFRESH, "g1", "bob", START, 0)},  # another user
    {"refresh": _token(14, REFRESH, "g1", "alice", START, 0, client_id="c2")},
    {"refresh": _token(14, REFRESH, "g1", "alice", START + 1, 0)},  # another time
    {"refresh": _token(14, REFRESH, "g1", "alice", START, 0, label="phone")},
    {"refresh": _token(14, ACCESS, "g1", "alice", START, 0)},
    {"access": _token(13, REFRESH, "g1", "alice", START, 0)},
    {"access": _token(13, ACCESS, "", "alice", START, 0), "refresh": _token(14, REFRESH, "", "alice", START, 0)},
    {"access": _token(13, ACCESS, "g1", "alice", START, 0, scope="a\tb")},
])
def test_a_rotation_its_line_cannot_hold_is_not_written(change: dict[str, Token]) -> None:
    """
    The line holds once what both tokens share, so a rotation whose tokens
    do not share it (or with a tab in a field) is refused, not written.
    """
    record = _golden_record()
    fields = {"access": _token(13, ACCESS, "g1", "alice", START, 0), "refresh": record.refresh, **change}
    with pytest.raises(ValueError):
        encode(TokenRotated(10, (), fields["access"], fields["refresh"]))


# One step of a history: issue a token of a grant, revoke one, rotate (in
# the four-record form), or end a grant.
_steps = st.tuples(
    st.sampled_from(["access", "refresh", "refresh", "revoke", "rotate", "rotate", "end"]),
    st.integers(0, 2),  # which grant
    st.integers(0, 1),  # which user
    st.integers(-7200, 0),  # issued this long before START
    st.sampled_from([0, 60, 3600, 7200, 90000]),  # lifetime
)


def _history(steps: list[tuple[str, int, int, int, int]]) -> list[Record]:
    records: list[Record] = [
        ClientPut(Client(id="c1", name="one", max_tokens=3)),
        ClientPut(Client(id="c2", name="two")),
        *(UserPut(User(name=name)) for name in USERS),
    ]
    keys: dict[str, list[int]] = {grant: [] for grant in GRANTS}
    for number, (what, grant_at, user_at, ago, lifetime) in enumerate(steps, 1):
        grant, user = GRANTS[grant_at], USERS[user_at]
        key = number << 64
        if what in ("access", "refresh"):
            kind = ACCESS if what == "access" else REFRESH
            records.append(TokenIssued(_token(key, kind, grant, user, START + ago, lifetime)))
            keys[grant].append(key)
        elif what == "revoke" and keys[grant]:
            records.append(TokenRevoked(keys[grant].pop(0)))
        elif what == "rotate" and keys[grant]:
            records += rotation.parts(TokenRotated(
                keys[grant][-1], (), _token(key, ACCESS, grant, user, START + ago, lifetime),
                _token(key + 1, REFRESH, grant, user, START + ago, lifetime)))
            keys[grant] += [key, key + 1]
        elif what == "end":
            records.append(GrantRevoked(grant))
    return records


def _built(records: list[Record], replayed: bool, swept: bool) -> State:
    """
    A state built from C{records}: applied at run time (tokens held as
    L{Token}s) or replayed (held as payloads); C{swept}: then swept a
    minute on, so ended families and expired tokens are still about.
    """
    state = State()
    if replayed:
        replay(state, [encode(r) for r in records], START)
    else:
        state.apply(records, START)
    if swept:
        state.sweep(START + 60)
    return state


def _rotation(state: State, pick: int, limit: int, lifetime: int, odd: str) -> TokenRotated:
    """
    A refresh of one of the refresh tokens C{state} holds, as the protocol
    layer decides it (the grant's oldest access tokens beyond C{limit}
    revoked), or C{odd}ly: one the one-pass path must not take as it is.
    """
    held = sorted(key for key, token in state.tokens.items() if token.kind == REFRESH) or [1]
    key = held[pick % len(held)]
    used = state.tokens.get(key) or _token(key, REFRESH, "g1", "alice", START, 0)
    revoked = [t.key for t in state.access_beyond(used.grant, limit, START)]
    new_key = (1 << 100) + pick
    grant, user, client_id = used.grant, used.user, used.client_id
    if odd == "other grant":
        grant = "g9"
    elif odd == "other user":
        user = "bob" if user == "alice" else "alice"
    elif odd == "other client":
        client_id = "c2"
    elif odd == "taken key":
        new_key = key
    elif odd == "same key":
        new_key = next(iter(state.tokens), new_key)
    elif odd == "revoked twice" and revoked:
        revoked.append(revoked[-1])
    elif odd == "revoked refresh":
        revoked.append(key)
    elif odd == "revoked other" and state.tokens:
        revoked.append(min(state.tokens))
    elif odd == "unknown revoked":
        revoked.append(7)
    return TokenRotated(key, tuple(revoked),
                        _token(new_key, ACCESS, grant, user, START, lifetime, used.label, client_id),
                        _token(new_key + 1, REFRESH, grant, user, START, lifetime, used.label, client_id))


def _picture(state: State) -> object:
    """
    What C{state} holds that anything reads: its tokens (sharing their
    owners' names), their order, the keys each client, user and grant
    lists and counts, the expiry buckets, the families and used keys.
    (Not when a list or the issue order drops the keys of removed tokens,
    nor in which order names are in a list's or a count's table, which
    are read by name: that is bookkeeping, and the one-pass path does it
    once.)
    """
    rows = state._rows

    def row(value: object) -> object:
        if type(value) is not Token:
            return value
        client = state.clients.get(value.client_id)
        shared = client is None or value.client_id is client.id
        return (*(getattr(value, name) for name in Token.__slots__), shared)

    def lists(index: dict[str, list[int]]) -> object:
        listed = {name: [key for key in keys if key in rows] for name, keys in index.items()}
        return {name: keys for name, keys in listed.items() if keys}

    order = state.token_order
    keys, numbers = order.run(0, order.end, len(order))
    families = state.families
    return (
        [(key, row(value)) for key, value in rows.items()],
        [(number, key) for key, number in zip(keys, numbers) if key in rows], order.end,
        [lists(index) for index in (state._own, state._by_client, state._by_user, state._by_grant)],
        state._client_count, state._user_count,
        list(state._expiry.items()), state._unbucketed,
        [(g, [getattr(f, s) for s in f.__slots__]) for g, f in getattr(families, "_live").items()],
        [(k, f.grant) for k, f in families.spent.items()],
        [(m, [f.grant for f in fs]) for m, fs in getattr(families, "_expiry").items()],
        [f.grant for f in getattr(families, "_ended")],
    )


def _afterwards(state: State) -> object:
    """
    What C{state} gives later: its snapshot, a sweep, and a replay of it.
    """
    snapshot = list(state.snapshot(START))
    swept = state.sweep(START + 4000)
    again = State()
    replay(again, snapshot, START)
    return snapshot, swept, _picture(state), list(again.snapshot(START + 4000))


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(_steps, max_size=30),
    replayed=st.booleans(),
    swept=st.booleans(),
    pick=st.integers(0, 20),
    limit=st.integers(0, 4),
    lifetime=st.sampled_from([0, 60, 3600, 90000]),
    odd=st.sampled_from(["", "", "", "other grant", "other user", "other client", "taken key", "same key",
                         "revoked twice", "revoked refresh", "revoked other", "unknown revoked"]),
)
# A rotation that empties its grant's, client's and user's lists of live
# keys: each listed again from nothing.
@example(steps=[("refresh", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600)],
         replayed=False, swept=False, pick=0, limit=1, lifetime=3600, odd="")
def test_a_rotation_leaves_what_its_parts_leave(
    steps: list[tuple[str, int, int, int, int]], replayed: bool, swept: bool, pick: int, limit: int,
    lifetime: int, odd: str,
) -> None:
    """
    Over random states (tokens at and under the grant's limit, expired
    ones, ended families, replayed or issued at run time), a rotation
    applied as one record, or replayed from its line, leaves the state,
    its snapshot, its sweep and a replay of it as its parts applied one
    after the other do; so does a shared log's follower (applying it
    through admission) wherever it admits it, and where it does not, the
    rotation changes nothing there.
    """
    history = _history(steps)
    states = [_built(history, replayed, swept) for _ in range(4)]
    # Each state its own tokens: taking one in shares its owners' names.
    # (Deciding one reads the grant's tokens, which may note when the
    # first of them expires: before the picture taken.)
    records = [_rotation(state, pick, limit, lifetime, odd) for state in states]
    whole, parts, read, followed = states
    before = _picture(followed)
    whole.apply([records[0]], START)
    for part in rotation.parts(records[1]):
        parts.apply([part], START)
    read.load([encode(records[2])], START)
    admitted = apply_at(followed, encode(records[3]), START)
    assert _picture(whole) == _picture(parts)
    assert _picture(read) == _picture(parts)
    assert _picture(followed) == (_picture(parts) if admitted else before)
    assert _afterwards(whole) == _afterwards(parts)


def test_a_journal_of_either_form_replays_to_the_same_state() -> None:
    """
    A journal holding rotations in the four-record form (written before
    the rotation record) and one holding them as rotation records replay
    to the same state, and so does one holding both.
    """
    steps = [("refresh", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600), ("refresh", 1, 1, 0, 0)]
    history = _history(steps)
    state = _built(history, replayed=False, swept=False)
    rotations = []
    for number, pick in enumerate((0, 1, 0, 1)):
        record = _rotation(state, pick, 1, 3600, "")
        grant, user = record.access.grant, record.access.user
        record = TokenRotated(record.used, record.revoked,
                              _token((number + 50) << 80, ACCESS, grant, user, START, 3600),
                              _token((number + 60) << 80, REFRESH, grant, user, START, 0))
        state.apply([record], START)
        rotations.append(record)
    new_form = [encode(r) for r in [*history, *rotations]]
    old_form = [encode(r) for r in history] + [encode(p) for r in rotations for p in rotation.parts(r)]
    mixed = [encode(r) for r in history] + [encode(p) for p in rotation.parts(rotations[0])] + [
        encode(r) for r in rotations[1:]]
    assert sum(p.startswith(b"rot\t") for p in new_form) == 4
    pictures = []
    for journal in (new_form, old_form, mixed):
        replayed = State()
        replay(replayed, journal, START)
        pictures.append((list(replayed.snapshot(START)), sorted(replayed.tokens), sorted(replayed.families.spent)))
    assert pictures[0] == pictures[1] == pictures[2]
    assert pictures[0][1] == sorted(state.tokens)


def test_a_refresh_is_applied_in_one_pass() -> None:
    """
    A rotation as the protocol layer decides it (the used token, the
    access token beyond the limit, the new pair) takes the one-pass path:
    what the property test compares is what runs.
    """
    steps = [("refresh", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600),
             ("access", 0, 0, 0, 3600)]
    state = _built(_history(steps), replayed=False, swept=False)
    record = _rotation(state, 0, 3, 3600, "")
    assert len(record.revoked) == 1
    assert rotation.rotate(state, record, START) is True
    assert state.token_count(client_id="c1") == 4
    assert sorted(t.kind for t in state.grant_tokens("g1", START)) == [ACCESS] * 3 + [REFRESH]
    assert rotation.rotate(state, record, START) is False  # again: its parts, which do nothing now


def test_a_rotation_claims_what_its_parts_claim() -> None:
    """
    On a shared log a rotation claims its grant's refresh token as its
    parts do: a compare-and-set from the used token to the new one.
    """
    state = _built(_history([("refresh", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600)]), False, False)
    record = _rotation(state, 0, 1, 3600, "")
    claims = implied_claims(state, [record])
    assert claims == implied_claims(state, rotation.parts(record))
    assert len(claims) == 1 and claims[0].key == "grant:g1"
    stray = TokenRotated(99, (), record.access, record.refresh)  # a used token not held
    assert implied_claims(state, [stray]) == implied_claims(state, rotation.parts(stray))


def test_a_rotation_for_an_absent_user_is_refused_before_anything_changes() -> None:
    """
    The committer refuses a rotation whose tokens memory would not take in
    (their user absent or disabled), as it refuses such a token record:
    nothing is applied or journalled, the used token included.
    """
    journal = MemoryJournal()
    store = Store.load(journal, Clock(), log_audit)
    for setup in _history([("refresh", 0, 0, 0, 3600), ("access", 0, 0, 0, 3600)]):
        store.commit(change([setup]))
    record = _rotation(store.state, 0, 1, 3600, "other user")
    store.commit(change([UserPut(User(name="bob", disabled=True))]))
    held, written = dict(store.state.tokens), list(journal.payloads)
    with pytest.raises(ValueError, match="absent or disabled"):
        store.commit(change([record]))
    assert dict(store.state.tokens) == held and journal.payloads == written
    assert record.used in store.state.tokens
