"""
Token keys listed by name (a client, a user, a grant), oldest first: the
state's indexes for every lookup of a client's, a user's or a grant's tokens
(L{oauthd.state.model}).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
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

    def replaced(self, name: str, rows: Container[int], gone: int, added: tuple[int, ...]) -> None:
        """
        C{gone} of the keys listed under C{name} left C{rows}, and the keys
        C{added} were taken in (listed last): L{gone} that many times, and
        appending them, in one go (a refresh token's rotation).
        """
        entries = self.get(name)
        stale = self._stale.get(name, 0) + gone
        if entries is not None and stale * 2 < len(entries):
            self._stale[name] = stale
            entries += added
            return
        kept = [] if entries is None else list(filter(rows.__contains__, entries))
        kept += added
        self[name] = kept
        self._stale.pop(name, None)

    def take(self, name: str) -> list[int]:
        """
        Remove C{name}'s list and give it.
        """
        self._stale.pop(name, None)
        return self.pop(name, [])

    def held(self, name: str) -> int:
        """
        How many of the keys listed under C{name} are still in the rows.
        """
        return len(self.get(name, ())) - self._stale.get(name, 0)


HORIZON = 60
"""
Seconds ahead of a client's token limit's full read within which the expiry
times it finds are kept (L{OwnMark}): the first one beyond them is when it
reads the tokens again, so at most once in that time.
"""


class OwnMark:
    """
    What a client's token limit knows of the client's own tokens without
    reading them (L{OwnLists.beyond}); as long as C{fresh_until} is ahead,
    exactly how many are live. Per client, made at its first limit check.

    @ivar start: the keys listed before this index are of tokens no longer
        held (the oldest go first: a cursor past them, not a search).
    @ivar fresh_until: until then the mark is exact: every held token that
        expires before it is counted in C{known}; -NEVER until the first
        full read.
    @ivar known: how many of the held tokens expire at each time before
        C{fresh_until} (expired ones too, until they leave): a count per
        second, not an entry per token, so that a token leaving (the sweep
        drops thousands) costs no shift of a list as long as the tokens.
    @ivar ends: the times C{known} counts, sorted.
    """

    __slots__ = ("start", "known", "ends", "fresh_until")

    def __init__(self) -> None:
        self.start = 0
        self.known: dict[int, int] = {}
        self.ends: list[int] = []
        self.fresh_until = -NEVER

    def expired(self, now: float) -> int:
        """
        How many of the tokens C{known} counts have expired at C{now}.
        """
        return sum(map(self.known.__getitem__, self.ends[:bisect_right(self.ends, now)]))


class OwnLists(KeyLists):
    """
    The keys of the clients' own access tokens (no grant), by client, and
    for each client whose token limit was checked its L{OwnMark}, which
    every token taken in and every one that leaves keeps exact.
    """

    __slots__ = ("marks",)

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, OwnMark] = {}

    def took(self, token: Token) -> None:
        """
        C{token} was taken in (and, an own token, listed last of its client's).
        """
        mark = self.marks.get(token.client_id)
        if mark is not None and token.lifetime and token.kind == ACCESS and not token.grant:
            expires_at = token.issued_at + token.lifetime
            if expires_at < mark.fresh_until:
                known = mark.known
                if expires_at in known:
                    known[expires_at] += 1
                else:
                    known[expires_at] = 1
                    insort(mark.ends, expires_at)

    def left(self, token: Token, rows: Container[int]) -> None:
        """
        C{token}, an own token, left C{rows}.
        """
        name = token.client_id
        mark = self.marks.get(name)
        if mark is None:
            self.gone(name, rows)
            return
        expires_at = token.issued_at + token.lifetime
        if token.lifetime and expires_at < mark.fresh_until:
            known = mark.known
            left = known[expires_at] - 1
            if left:
                known[expires_at] = left
            else:
                del known[expires_at]
                del mark.ends[bisect_left(mark.ends, expires_at)]
        entries = self.get(name)
        self.gone(name, rows)
        if self.get(name) is not entries:  # pruned: the cursor's place is gone
            mark.start = 0

    def take(self, name: str) -> list[int]:
        self.marks.pop(name, None)
        return super().take(name)

    def beyond(self, name: str, rows: Mapping[int, Row], limit: int, now: float, adding: int) -> list[Token]:
        """
        The oldest of C{name}'s own tokens live at C{now}, as many as must go
        for C{adding} more to leave at most C{limit} (0 or more): none read
        while even all held (the expired ones too) leave room; else only the
        oldest, while the mark tells how many are live.
        """
        held = self.held(name)
        excess = held + adding - limit
        if excess <= 0 or not held:
            return []
        mark = self.marks.get(name)
        if mark is None:
            mark = self.marks[name] = OwnMark()
        if now < mark.fresh_until:
            excess -= mark.expired(now)
            return _live_from(self[name], mark, rows, now, excess) if excess > 0 else []
        live = _live_from(self[name], mark, rows, now, -1, reread=True)
        return live[:max(0, len(live) + adding - limit)]


def _live_from(entries: list[int], mark: OwnMark, rows: Mapping[int, Row], now: float, most: int,
               reread: bool = False) -> list[Token]:
    """
    The tokens live at C{now} of those that C{rows} holds of a client's
    own C{entries} (one at least), in order: the first C{most} of them (all
    for -1). Moves the mark's cursor past the keys no longer held before
    the first; to C{reread}, reads them all and marks their expiry times
    anew.
    """
    start = mark.start
    while entries[start] not in rows:
        start += 1
    mark.start = start
    found: list[Token] = []
    ends: list[int] = []
    for index in range(start, len(entries)):
        row = rows.get(entries[index])
        if row is None:
            continue
        token = row if type(row) is Token else parse_token(row)
        if token.lifetime:
            expires_at = token.issued_at + token.lifetime
            if reread:
                ends.append(expires_at)
            if expires_at <= now:
                continue
        found.append(token)
        if len(found) == most:
            return found
    if reread:
        ends.sort()
        cut = bisect_right(ends, now + HORIZON)
        mark.known = known = dict(Counter(ends[:cut]))  # in order: ends is sorted
        mark.ends = list(known)
        mark.fresh_until = ends[cut] if cut < len(ends) else NEVER
    return found


class TokenLists:
    """
    The state's token keys by client (a client's own access tokens apart:
    no grant, what its token limit counts, without scanning every user's
    tokens at that client), by user and by grant; and how many tokens each
    client and user holds.
    """

    __slots__ = ("own", "by_client", "by_user", "by_grant", "client_count", "user_count")

    def __init__(self) -> None:
        self.own = OwnLists()
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
            if token.kind == ACCESS and not grant:
                self.own.left(token, rows)
            else:
                self.by_client.gone(client_id, rows)
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
