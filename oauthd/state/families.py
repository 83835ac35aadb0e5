"""
Refresh token families (grants): when each started, and the refresh tokens
it has used, kept only so that one presented again is recognised (RFC 9700
section 4.14.2: reuse revokes the family).

A used refresh token is no longer a token: it is its lookup key in a map to
its family, and nothing else. Ending a family (revocation, expiry, its owner
gone) removes it from the live families at once, whatever it has used: its
used keys then name a family that is not live, which is what a lookup
checks, and the sweep forgets them a slice at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from oauthd.state.records import FamilyHeld, RefreshSpent

EXPIRY_BUCKET = 60
"""
Seconds of expiry times that share one sweep bucket.
"""

NEVER = float("inf")


class Family:
    """
    One grant's refresh family.

    @ivar started: when its first token was issued (for a journal older than
        family records: the first of its tokens replay saw).
    @ivar expires_at: when the last of its tokens expires (used ones
        included); 0 for never.
    @ivar used: the keys of the refresh tokens it has used; C{None} until
        it uses one (replay makes a family per grant, and most never rotate
        before they end: one list fewer each for the garbage collector).
    @ivar access: how many access tokens of the grant the state holds
        (expired ones too, until the sweep drops them).
    @ivar fresh_until: no access token of the grant the state holds expires
        before this (a lower bound: while it is ahead, all of them are
        live, and a refresh counts them without reading one).
    """

    __slots__ = ("grant", "client_id", "user", "started", "expires_at", "used", "access", "fresh_until")

    def __init__(self, grant: str, client_id: str, user: str, started: int, expires_at: int) -> None:
        self.grant = grant
        self.client_id = client_id
        self.user = user
        self.started = started
        self.expires_at = expires_at
        self.used: list[int] | None = None
        self.access = 0
        self.fresh_until = NEVER

    def took_access(self, expires_at: int) -> None:
        """
        The state took in an access token of the grant, expiring at
        C{expires_at} (0: never).
        """
        self.access += 1
        if expires_at and expires_at < self.fresh_until:
            self.fresh_until = expires_at

    def __repr__(self) -> str:
        return f"<Family {self.grant} client={self.client_id!r} user={self.user!r} used={len(self.used or ())}>"


class Families:
    """
    The live families by grant, the family of every used refresh token, and
    what the sweep has left to do: families to end when they expire, used
    keys of ended families to forget.
    """

    def __init__(self) -> None:
        self._live: dict[str, Family] = {}
        self._used: dict[int, Family] = {}
        # Families by the minute they expire, each listed once: one that a
        # rotation extended since is listed again, under its new minute,
        # only when the sweep comes to the old one (a family rotated every
        # minute would otherwise make a list a minute).
        self._expiry: dict[int, list[Family]] = {}
        self._ended: list[Family] = []

    @property
    def spent(self) -> Mapping[int, Family]:
        """
        Every used refresh token key not yet forgotten, and its family (live
        or not).
        """
        return self._used

    def get(self, grant: str) -> Family | None:
        return self._live.get(grant)

    def of_used(self, key: int) -> Family | None:
        """
        The live family that used the refresh token with C{key}.
        """
        family = self._used.get(key)
        if family is None or self._live.get(family.grant) is not family:
            return None
        return family

    def join(self, grant: str, client_id: str, user: str, issued_at: int, expires_at: int) -> Family:
        """
        The live family of a token taken in (made if it is the first), which
        lives at least as long as that token.
        """
        family = self._live.get(grant)
        if family is None:
            family = self._live[grant] = Family(grant, client_id, user, issued_at, expires_at)
            if expires_at:
                self._schedule(family)
            return family
        if issued_at < family.started:
            family.started = issued_at
        ends = family.expires_at
        if ends and (not expires_at or expires_at > ends):
            family.expires_at = expires_at
        return family

    def _schedule(self, family: Family) -> None:
        minute = family.expires_at // EXPIRY_BUCKET
        listed = self._expiry.get(minute)
        if listed is None:
            listed = self._expiry[minute] = []
        listed.append(family)

    def spend(self, family: Family, key: int) -> None:
        """
        Remember that C{family} used the refresh token with C{key}.
        """
        if key not in self._used:
            self._used[key] = family
            if family.used is None:
                family.used = [key]
            else:
                family.used.append(key)

    def end(self, grant: str) -> None:
        """
        End a family, at a cost that does not grow with what it has used.
        """
        family = self._live.pop(grant, None)
        if family is not None and family.used:
            self._ended.append(family)

    def sweep(self, now: float, limit: int) -> tuple[int, bool]:
        """
        End the families whose every token has expired, and forget used keys
        of ended families.

        @param limit: look at no more than this many entries (0: no limit).
        @return: how many entries were looked at, and whether some are left
            for another call.
        """
        examined = 0
        current = int(now) // EXPIRY_BUCKET
        for minute in sorted(m for m in self._expiry if m < current):
            listed = self._expiry[minute]
            while listed:
                if limit and examined >= limit:
                    return examined, True
                family = listed.pop()
                examined += 1
                if self._live.get(family.grant) is not family or not family.expires_at:
                    continue
                if family.expires_at <= now:
                    self.end(family.grant)
                else:
                    self._schedule(family)
            del self._expiry[minute]
        used = self._used
        while self._ended:
            family = self._ended[-1]
            keys = family.used or []
            while keys:
                if limit and examined >= limit:
                    return examined, True
                key = keys.pop()
                examined += 1
                if used.get(key) is family:
                    del used[key]
            self._ended.pop()
        return examined, False

    def snapshot(self, now: float) -> Iterator[FamilyHeld | RefreshSpent]:
        """
        Records that rebuild the families live at C{now}: each one, then its
        used keys (not one the sweep has yet to end: a snapshot, and the
        state digest over it, must not depend on when the sweep ran).  The
        families are those held at the call; their used keys are read as
        they come.
        """
        return self._records(list(self._live.values()), now)

    @staticmethod
    def _records(held: list[Family], now: float) -> Iterator[FamilyHeld | RefreshSpent]:
        for family in held:
            if family.expires_at and family.expires_at <= now:
                continue
            yield FamilyHeld(family.grant, family.client_id, family.user, family.started,
                             family.expires_at)
            for key in list(family.used or ()):
                yield RefreshSpent(key, family.grant)

    def records(self) -> int:
        """
        How many records L{snapshot} would give, for the compaction policy.
        """
        return len(self._live) + len(self._used)
