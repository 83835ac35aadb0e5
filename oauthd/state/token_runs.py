"""
Replay into an empty state a chunk of records at a time (L{replay_chunks}):
a chunk of plain token records is taken in whole, by operations that each
walk all of its records in C (split, parse, index), rather than by a loop in
Python that does all of them for one record and then the next; start-up
runs this over every token a journal holds.

It is L{State.load}'s replay, only faster: the state it builds is the same
in every detail (rows, indexes, counts, issue order). A chunk it does not
take whole goes through L{State.load}, which also names a malformed record:
one with other records among its tokens, or with a token that is not plain
(in a refresh family or a used refresh token; owned by a client or user
that is absent or disabled; already held, or twice in the chunk) or not
written as L{oauthd.state.records.encode} writes one (its key an even
number of hex digits, its times ASCII digits, valid UTF-8).
"""

from __future__ import annotations

import ctypes
from binascii import unhexlify
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import compress, islice, repeat
from operator import add, lt, not_
from typing import TYPE_CHECKING

from oauthd.state.entities import ACCESS, KINDS, USED_REFRESH
from oauthd.state.records import TOKEN_TAG

if TYPE_CHECKING:
    from oauthd.state.model import State

CHUNK = 4096
"""
Records per chunk: enough that the work per chunk is spread thin, few
enough that a chunk L{State.load} must take is not a long detour.
"""

_TAB = b"\t"
_TAG = b"tok"
# The least payload greater than every payload that begins with the tag.
_AFTER_TAG = TOKEN_TAG[:-1] + bytes([TOKEN_TAG[-1] + 1])
_FIELDS = 10
_ACCESS = ACCESS.encode()
_PLAIN_KINDS = frozenset(kind.encode() for kind in KINDS - {USED_REFRESH})


def replay_chunks(state: State, payloads: Iterable[bytes], now: float, size: int = CHUNK) -> int:
    """
    L{State.load} C{payloads} into C{state}, which holds no tokens yet,
    as replay does (tokens held as their payloads, left out of the expiry
    buckets).

    @param size: records per chunk (tests make it small).
    @return: the number of payloads.
    @raise ValueError: naming the payload's number, if one is malformed.
    """
    count = 0
    # The state's own string for each client id and user name the tokens
    # name, as long as no other record can have changed them.
    owners: tuple[dict[bytes, str], dict[bytes, str]] = ({}, {})
    for chunk, tokens in _chunks(payloads, size):
        if not (tokens and _take(state, chunk, now, owners)):
            owners[0].clear()
            owners[1].clear()
            state.load(chunk, now, replaying=True, first=count + 1)
        count += len(chunk)
    _give_back_free_memory()
    return count


def _give_back_free_memory() -> None:
    """
    Return to the system the memory the chunks' temporaries left free in
    the C heap, which a process that has just replayed a large journal
    would otherwise keep for as long as it runs (glibc's C{malloc_trim};
    elsewhere, nothing).
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _chunks(payloads: Iterable[bytes], size: int) -> Iterator[tuple[list[bytes], bool]]:
    """
    The payloads in chunks of up to C{size} records, each with whether it
    holds token records only.
    """
    source = iter(payloads)
    while chunk := list(islice(source, size)):
        # Every payload begins with the tag if the least and the greatest
        # do (a comparison each, not a call).
        if min(chunk) >= TOKEN_TAG and max(chunk) < _AFTER_TAG:
            yield chunk, True
            continue
        tokens = list(map(bytes.startswith, chunk, repeat(TOKEN_TAG)))
        # Cut after the last record that is not a token, so that the tokens
        # after it (most of a chunk, in a journal of tokens) go together.
        last = len(tokens) - tokens[::-1].index(False)
        if len(chunk) - last < size // 10:
            yield chunk, False
        else:
            yield chunk[:last], False
            yield chunk[last:], True


def _take(
    state: State, chunk: list[bytes], now: float, owners: tuple[dict[bytes, str], dict[bytes, str]]
) -> bool:
    """
    Take a chunk of token records into C{state}, if they are all plain
    tokens (see the module docstring) and well-formed; else leave the state
    as it is.

    @param owners: the state's own string for the client ids and for the
        user names looked up already (L{State._owners}); this adds to them.
    @return: whether it was taken.
    """
    joined = _TAB.join(chunk)
    try:
        joined.decode("utf-8")
    except UnicodeDecodeError:
        return False
    fields = joined.split(_TAB)
    # Each payload begins with its tag, "tok". Had one more or fewer than
    # ten fields, the fields of those after it would be out of step with
    # the columns below, and a tag would be in one of them: in one that
    # must hold a number, a kind or nothing, or in one checked not to.
    kinds = set(fields[2::_FIELDS])
    clients = fields[3::_FIELDS]
    users = fields[4::_FIELDS]
    client_set = set(clients)
    user_set = set(users)
    if (len(fields) != _FIELDS * len(chunk) or any(fields[8::_FIELDS])
            or not _PLAIN_KINDS.issuperset(kinds) or _TAG in client_set or _TAG in user_set
            or _TAG in fields[5::_FIELDS] or _TAG in fields[9::_FIELDS]):
        return False
    hexes = fields[1::_FIELDS]
    if b"" in hexes:
        return False
    try:
        # What int(text, 16) reads, in two calls quicker than it, for an even
        # number of hex digits (as written: 32); anything else is refused.
        keys = list(map(int.from_bytes, map(unhexlify, hexes)))
        issued = _numbers(fields[6::_FIELDS])
        lifetimes = _numbers(fields[7::_FIELDS])
    except ValueError:  # binascii.Error is one
        return False
    kinds_column = None
    if 0 in lifetimes.values() or min(issued.values()) + min(lifetimes.values()) <= now:
        # Some expired (their end is past) or never expire (no lifetime).
        lifetime_of = lifetimes.__getitem__
        ends = map(add, map(issued.__getitem__, fields[6::_FIELDS]), map(lifetime_of, fields[7::_FIELDS]))
        live = list(map(bool.__or__, map(lt, repeat(now), ends), map(not_, map(lifetime_of, fields[7::_FIELDS]))))
        if not any(live):
            return True
        if not all(live):
            keys = list(compress(keys, live))
            chunk = list(compress(chunk, live))
            clients = list(compress(clients, live))
            users = list(compress(users, live))
            kinds_column = list(compress(fields[2::_FIELDS], live))
            kinds = set(kinds_column)
            client_set = set(clients)
            user_set = set(users)
    client_owners, user_owners = owners
    if not (_look_up(state, client_owners, client_set, 0) and _look_up(state, user_owners, user_set, 1)):
        return False
    rows = state._rows
    spent = state.families.spent
    if not rows.keys().isdisjoint(keys) or (spent and not spent.keys().isdisjoint(keys)):
        return False
    held = len(rows)
    rows.update(zip(keys, chunk))
    if len(rows) != held + len(keys):
        # A key twice in the chunk: none of them was held before.
        for key in keys:
            rows.pop(key, None)
        return False
    state.token_order.add_all(keys)
    counts = state._client_count
    if len(kinds) == 1:
        index = state._own if _ACCESS in kinds else state._by_client
        _list(index, counts, client_owners, clients, client_set, keys)
    else:
        if kinds_column is None:
            kinds_column = fields[2::_FIELDS]
        own = list(map(_ACCESS.__eq__, kinds_column))
        for index, wanted in ((state._own, own), (state._by_client, list(map(not_, own)))):
            named = list(compress(clients, wanted))
            _list(index, counts, client_owners, named, set(named), list(compress(keys, wanted)))
    _list(state._by_user, state._user_count, user_owners, users, user_set, keys)
    return True


def _numbers(column: list[bytes]) -> dict[bytes, int]:
    """
    The number each text in a column of a chunk stands for: the texts of
    times and lifetimes are few, for a chunk's tokens are issued close
    together.

    @raise ValueError: one is not a number.
    """
    distinct = set(column)
    return dict(zip(distinct, map(int, distinct)))


def _look_up(state: State, owners: dict[bytes, str], names: set[bytes], which: int) -> bool:
    """
    Add to C{owners} the state's own string for each client id (C{which} 0)
    or user name (1) in C{names} it does not have yet (C{""} for none);
    whether they are all present and enabled (L{State._owners}).
    """
    for name in names.difference(owners):
        text = name.decode()
        owner = state._owners(*((text, "") if which == 0 else ("", text)))
        if owner is None:
            return False
        owners[name] = owner[which]
    return True


def _list(
    index: dict[str, list[int]], counts: dict[str, int], owners: dict[bytes, str],
    names: list[bytes], distinct: set[bytes], keys: list[int],
) -> None:
    """
    Append each key to the list in C{index} of its client or user (its name
    as the chunk has it, the state's string for it in C{owners}), in order,
    and count it there in C{counts}; a key without one (C{b""}) is in
    neither.
    """
    if b"" in distinct:
        distinct = distinct - {b""}
        if not distinct:
            return
        named = list(map(bool, names))
        names = list(compress(names, named))
        keys = list(compress(keys, named))
    lists = {}
    before = []
    for name in distinct:
        owner = owners[name]
        listed = index.get(owner)
        if listed is None:
            listed = index[owner] = []
        lists[name] = listed
        before.append((owner, listed, len(listed)))
    deque(map(list.append, map(lists.__getitem__, names), keys), 0)
    for owner, listed, held in before:
        counts[owner] = counts.get(owner, 0) + len(listed) - held
