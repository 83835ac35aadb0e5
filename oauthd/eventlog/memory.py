# -*- test-case-name: tests.test_journal -*-
"""
L{MemoryJournal}: an L{IEventLog} held in memory, the fake the layers above
test against.  It keeps the file journal's rules (payload checks, counters
measured as the file would be, the failed and closed states) without files
or threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from attrs import define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed

from oauthd.eventlog.errors import JournalClosed, JournalFailed
from oauthd.eventlog.format import HEADER_SIZE, check_payload, record_bytes
from oauthd.eventlog.local import LocalLog, SingleWriter
from oauthd.interfaces import Claim, IEventLog

__all__ = ["MemoryJournal"]


def _checked_list(payloads: Iterable[bytes]) -> list[bytes]:
    return [check_payload(p) for p in payloads]


@implementer(IEventLog)
@define(eq=False)
class MemoryJournal(SingleWriter):
    """
    An L{IEventLog} held in memory, for tests of the layers above.

    L{append} and L{compact} complete at once.  L{payloads} shows what a
    file would now hold; C{MemoryJournal(old.payloads)} is a "reopen".
    L{fail} puts it in the failed state a write error would.
    """

    _at_open: list[bytes] = field(factory=list, converter=_checked_list, alias="payloads")
    _payloads: list[bytes] = field(init=False)
    _failure: JournalFailed | None = None
    _closed: bool = False
    _local: LocalLog = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._payloads = list(self._at_open)
        self._local = LocalLog(len(self._at_open))

    @property
    def payloads(self) -> list[bytes]:
        """
        A copy of the payloads the log now holds, in order.
        """
        return list(self._payloads)

    @property
    def record_count(self) -> int:
        """
        See L{IEventLog.record_count}.
        """
        return len(self._payloads)

    @property
    def byte_count(self) -> int:
        """
        See L{IEventLog.byte_count}: what the file journal's file would
        measure.
        """
        return HEADER_SIZE + record_bytes(self._payloads)

    def fail(self, reason: Exception) -> None:
        """
        Behave from now on as if a write had failed with C{reason}.
        """
        error = JournalFailed(f"memory journal failed: {reason}")
        error.__cause__ = reason
        self._failure = error

    def _refusal(self) -> Deferred[None] | None:
        if self._closed:
            return fail(JournalClosed("memory journal is closed"))
        if self._failure is not None:
            return fail(self._failure)
        return None

    def append(self, payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        """
        See L{IEventLog.append}.
        """
        batch = [check_payload(p) for p in payloads]
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if (conflict := self._claim(claims)) is not None:
            return fail(conflict)
        self._payloads += batch
        self._local.committed(batch)
        return succeed(None)

    def replay(self) -> Iterator[bytes]:
        """
        See L{IEventLog.replay}.
        """
        return iter(list(self._at_open))

    def compact(self, snapshot: Iterable[bytes]) -> Deferred[None]:
        """
        See L{IEventLog.compact}.  The snapshot is consumed at once.
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        try:
            live = [check_payload(p) for p in snapshot]
        except Exception:
            return fail()
        self._payloads = live
        return succeed(None)

    def close(self) -> Deferred[None]:
        """
        See L{IEventLog.close}.
        """
        self._closed = True
        return succeed(None)
