"""
Token keys listed by name (a client, a user, a grant), oldest first: the
state's indexes for every lookup of a client's, a user's or a grant's tokens
(L{oauthd.state.model}).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping

from oauthd.state.entities import ACCESS, Token
from oauthd.state.families import NEVER, Family
from oauthd.state.rows import Row, parse_token


class KeyLists(dict[str, list[int]]):
    """
    Token keys by name, each list in issue order (oldest first).

    A key whose token leaves the rows stays listed until half of its list is
    stale; then the list is pruned: removal from a list is O(n), and the
    rows are the truth. (A dict itself, so replay lists a million keys with
    the dict's own methods, no call of this class's.)
    """

    __slots__ = ("_stale",)

    def __init__(self) -> None:
        super().__init__()
        self._stale: dict[str, int] = {}

    def gone(self, name: str, rows: Container[int]) -> None:
        """
        One of the keys listed under C{name} left C{rows}.
        """
        entries = self.get(name)
        if entries is None:
            return
        stale = self._stale.get(name, 0) + 1
        if stale * 2 < len(entries):
            self._stale[name] = stale
            return
        # filter() walks the list in C: a grant's short list is pruned every
        # few rotations.
        kept = list(filter(rows.__contains__, entries))
        if kept:
            self[name] = kept
        else:
            del self[name]
        self._stale.pop(name, None)

    def take(self, name: str) -> list[int]:
        """
        Remove C{name}'s list and give it.
        """
        self._stale.pop(name, None)
        return self.pop(name, [])


class TokenLists:
    """
    The state's token keys by client (a client's own access tokens apart:
    no grant, what its token limit counts, without scanning every user's
    tokens at that client), by user and by grant; and how many tokens each
    client and user holds.
    """

    __slots__ = ("own", "by_client", "by_user", "by_grant", "client_count", "user_count")

    def __init__(self) -> None:
        self.own = KeyLists()
        self.by_client = KeyLists()
        self.by_user = KeyLists()
        self.by_grant = KeyLists()
        self.client_count: dict[str, int] = {}
        self.user_count: dict[str, int] = {}

    def remove(self, token: Token, rows: Container[int]) -> None:
        """
        C{token} left C{rows}: it is counted no more, and its keys are stale.
        """
        # Straight-line: a refresh removes two tokens, a token limit one.
        client_id, user, grant = token.client_id, token.user, token.grant
        if client_id:
            counts = self.client_count
            left = counts[client_id] - 1
            if left:
                counts[client_id] = left
            else:
                del counts[client_id]
            (self.own if token.kind == ACCESS and not grant else self.by_client).gone(client_id, rows)
        if user:
            counts = self.user_count
            left = counts[user] - 1
            if left:
                counts[user] = left
            else:
                del counts[user]
            self.by_user.gone(user, rows)
        if grant:
            self.by_grant.gone(grant, rows)


def held_access(keys: Iterable[int], rows: Mapping[int, Row], most: int = -1) -> list[Token]:
    """
    The access tokens among C{keys} that C{rows} holds, in the order of
    C{keys}: the first C{most} of them (all for -1).
    """
    if not most:
        return []
    found = []
    for key in keys:
        row = rows.get(key)
        if row is not None:
            token = row if type(row) is Token else parse_token(row)
            if token.kind == ACCESS:
                found.append(token)
                if len(found) == most:
                    break
    return found


def access_beyond(family: Family | None, keys: Iterable[int], rows: Mapping[int, Row], limit: int,
                  now: float) -> list[Token]:
    """
    The oldest live access tokens of a grant (C{keys}: its token keys, in
    issue order), as many as must go for one more to leave at most C{limit}
    (0 or more); without reading its tokens while its family's count tells
    (L{Family.access}).
    """
    if family is not None and family.access < limit:
        return []
    if family is not None and now < family.fresh_until:
        return held_access(keys, rows, family.access + 1 - limit)
    held = held_access(keys, rows)
    if family is not None:
        # Kept for the next refresh: the earliest end of those held.
        family.fresh_until = min((t.expires_at for t in held if t.lifetime), default=NEVER)
    live = [t for t in held if t.live(now)]
    return live[:max(0, len(live) + 1 - limit)]
