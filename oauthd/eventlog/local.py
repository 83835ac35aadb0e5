"""
What an event log kept by one process adds to its records for the shared-log
interface (L{oauthd.interfaces.IEventLog}): the claims it granted, and its
follower, to whom it delivers its own appends as they become durable.  One
process is the only writer, so a claim is decided on the reactor thread and
a record is delivered when its append is acknowledged.  Claims live for the
process's lifetime: the state replayed at the next start is the authority
on single use then.
"""

from __future__ import annotations

from typing import ClassVar

from collections.abc import Sequence

from attrs import define, field

from twisted.internet.defer import Deferred, succeed

from oauthd.interfaces import Claim, ClaimConflict, Deliver, Expect

__all__ = ["ClaimTable", "LocalLog", "SingleWriter"]


@define
class ClaimTable:
    """
    Claims held, by key: their value and expiry.
    """

    _held: dict[str, tuple[str, float | None]] = field(factory=dict)

    def conflict(self, claims: Sequence[Claim]) -> ClaimConflict | None:
        """
        The conflict of the first claim of C{claims} that does not hold, or
        C{None}.  Claims on one key are judged in order, each against what
        the ones before it set.
        """
        seen: dict[str, str] = {}
        for claim in claims:
            current = seen.get(claim.key)
            if current is None and claim.key in self._held:
                current = self._held[claim.key][0]
            if claim.expect is Expect.ABSENT and current is not None:
                return ClaimConflict(claim.key)
            if isinstance(claim.expect, str) and current != claim.expect:
                return ClaimConflict(claim.key)
            seen[claim.key] = claim.value
        return None

    def take(self, claims: Sequence[Claim]) -> None:
        """
        Set C{claims} (they hold: see L{conflict}).
        """
        for claim in claims:
            self._held[claim.key] = (claim.value, claim.expires)

    def value(self, key: str) -> str | None:
        """
        What C{key} holds, or C{None}.
        """
        held = self._held.get(key)
        return None if held is None else held[0]

    def sweep(self, before: float) -> int:
        """
        Forget the claims that expired before C{before}; how many.
        """
        gone = [k for k, (_, expires) in self._held.items() if expires is not None and expires < before]
        for key in gone:
            del self._held[key]
        return len(gone)


@define
class LocalLog:
    """
    The claims a single-process log granted, its follower, and the position
    it has reached.

    @ivar position: the position of the last record replayed or delivered.
    """

    position: int
    claims: ClaimTable = field(factory=ClaimTable)
    _deliver: Deliver | None = None

    def follow(self, deliver: Deliver) -> None:
        """
        See L{oauthd.interfaces.IEventLog.follow}.
        """
        if self._deliver is not None:
            raise RuntimeError("this log has a follower already")
        self._deliver = deliver

    def committed(self, payloads: Sequence[bytes]) -> None:
        """
        Number C{payloads}, made durable in this order, and deliver them
        (before their append's Deferred fires: see L{acknowledge}).
        """
        for payload in payloads:
            self.position += 1
            if self._deliver is not None:
                self._deliver(self.position, payload)

    def acknowledge(self, payloads: Sequence[bytes], done: Deferred[None]) -> None:
        """
        Deliver C{payloads}, made durable, then fire C{done}, their append's:
        a follower that raises fails that append only, as it would as its
        first callback, and the appends after it are still acknowledged.
        """
        try:
            self.committed(payloads)
        except Exception:
            done.errback()
        else:
            done.callback(None)


class SingleWriter:
    """
    The shared-log methods of a log kept by one process (a mixin): the
    class gives each instance a L{LocalLog} C{_local}, calls L{_claim}
    before it takes an append, and has C{_local} deliver its records
    before the append's Deferred fires (L{LocalLog.acknowledge}).
    """

    _local: LocalLog
    # One process wrote every record, applied as it stands.
    snapshot_records: ClassVar[int | None] = None

    def _claim(self, claims: Sequence[Claim]) -> ClaimConflict | None:
        conflict = self._local.claims.conflict(claims)
        if conflict is None:
            self._local.claims.take(claims)
        return conflict

    @property
    def position(self) -> int:
        """
        See L{oauthd.interfaces.IEventLog.position}.
        """
        return self._local.position

    def follow(self, deliver: Deliver) -> None:
        """
        See L{oauthd.interfaces.IEventLog.follow}.
        """
        self._local.follow(deliver)

    def sync(self) -> Deferred[None]:
        """
        See L{oauthd.interfaces.IEventLog.sync}: every append is delivered
        as it becomes durable, before it is acknowledged.
        """
        return succeed(None)

    def sweep_claims(self, before: float) -> Deferred[int]:
        """
        See L{oauthd.interfaces.IEventLog.sweep_claims}.
        """
        return succeed(self._local.claims.sweep(before))
