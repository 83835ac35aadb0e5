"""
The contract every event log (L{oauthd.interfaces.IEventLog}) honours, run
against each implementation: L{FileJournal} with its writer run inline,
L{MemoryJournal}, a node of a L{MemorySharedLog}, and L{PostgresLog} (its
jobs run inline, on a fresh database of the tests' own cluster).  Another implementation joins with one more subclass of
L{EventLogContract} that says how to open a log and how to reopen what a
closed one left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import (
    HEADER_SIZE,
    JOURNAL_NAME,
    MAX_PAYLOAD,
    RECORD_OVERHEAD,
    JournalClosed,
    JournalFailed,
    MemoryJournal,
    MemorySharedLog,
    SharedLogNode,
)
from oauthd.interfaces import Claim, ClaimConflict, Expect, IEventLog
from oauthd.testing import InlinePool, InlineReactor
from tests.journal_doubles import make_directory, open_inline
from tests.postgres import fresh_database


def file_size(directory: str) -> int:
    return os.path.getsize(os.path.join(directory, JOURNAL_NAME))


class EventLogContract(SynchronousTestCase):
    """
    What every L{IEventLog} does.  Subclasses say how to open a log and how
    to "restart" (close it and open what it left behind).
    """

    __test__ = False

    def open_log(self) -> IEventLog:
        raise NotImplementedError()

    def reopen(self, log: IEventLog) -> IEventLog:
        raise NotImplementedError()

    def test_provides_interface(self) -> None:
        """
        The log provides L{IEventLog}.
        """
        self.assertTrue(verifyObject(IEventLog, self.open_log()))

    def test_empty(self) -> None:
        """
        A new log replays nothing, counts no records, and measures just the
        header; so does the same log reopened.
        """
        log = self.open_log()
        self.assertEqual(list(log.replay()), [])
        self.assertEqual((log.record_count, log.byte_count), (0, HEADER_SIZE))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [])
        self.assertEqual((log.record_count, log.byte_count), (0, HEADER_SIZE))

    def test_append_replay_order(self) -> None:
        """
        Appended payloads, several to a call or none, come back in call order
        after a restart; every append's Deferred fires with None.
        """
        log = self.open_log()
        calls = [[b"one"], [b"two", b"three"], [], [b""], [b"five\x00\xff"]]
        for payloads in calls:
            self.assertIsNone(self.successResultOf(log.append(payloads)))
        log = self.reopen(log)
        self.assertEqual(
            list(log.replay()), [b"one", b"two", b"three", b"", b"five\x00\xff"]
        )

    def test_many_appends(self) -> None:
        """
        Thousands of appends survive a restart in order.
        """
        log = self.open_log()
        expected = [b"record %d " % i + b"x" * (i % 97) for i in range(3000)]
        for payload in expected:
            self.successResultOf(log.append([payload]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), expected)

    def test_counters(self) -> None:
        """
        C{record_count} and C{byte_count} follow appends and survive a
        restart; C{byte_count} is header + (8 + len) per record.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"a" * 10, b"b" * 20]))
        self.successResultOf(log.append([b"c" * 30]))
        expected = (3, HEADER_SIZE + 3 * RECORD_OVERHEAD + 60)
        self.assertEqual((log.record_count, log.byte_count), expected)
        log = self.reopen(log)
        self.assertEqual((log.record_count, log.byte_count), expected)

    def test_compaction_result(self) -> None:
        """
        After compaction the log holds exactly the snapshot, then what is
        appended later; the counters describe the new contents.
        """
        log = self.open_log()
        for i in range(50):
            self.successResultOf(log.append([b"old %d" % i]))
        self.successResultOf(log.compact(iter([b"live 1", b"live 2"])))
        self.assertEqual(
            (log.record_count, log.byte_count),
            (2, HEADER_SIZE + 2 * (RECORD_OVERHEAD + 6)),
        )
        self.successResultOf(log.append([b"after"]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"live 1", b"live 2", b"after"])
        self.assertEqual(log.record_count, 3)

    def test_compaction_to_nothing(self) -> None:
        """
        An empty snapshot leaves an empty log.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"gone"]))
        self.successResultOf(log.compact([]))
        self.assertEqual((log.record_count, log.byte_count), (0, HEADER_SIZE))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [])

    def test_compaction_snapshot_raises(self) -> None:
        """
        If iterating the snapshot raises, compaction errbacks with that
        error and the log keeps its contents and keeps working.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"kept"]))

        def snapshot() -> Iterator[bytes]:
            yield b"partial"
            raise ZeroDivisionError("state layer bug")

        self.failureResultOf(log.compact(snapshot()), ZeroDivisionError)
        self.flushLoggedErrors(ZeroDivisionError)
        self.successResultOf(log.append([b"later"]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"kept", b"later"])

    def test_compaction_refuses_oversized_snapshot(self) -> None:
        """
        A snapshot payload over the cap fails the compaction with
        L{ValueError}, changing nothing.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"kept"]))
        self.failureResultOf(log.compact([b"x" * (MAX_PAYLOAD + 1)]), ValueError)
        self.flushLoggedErrors(ValueError)
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"kept"])

    def test_append_refuses_oversized(self) -> None:
        """
        A payload over L{MAX_PAYLOAD} is refused with L{ValueError}, and none
        of the call's payloads is appended; one of exactly the cap is fine.
        """
        log = self.open_log()
        with self.assertRaises(ValueError):
            log.append([b"fine", b"x" * (MAX_PAYLOAD + 1)])
        self.successResultOf(log.append([b"y" * MAX_PAYLOAD]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"y" * MAX_PAYLOAD])

    def test_append_refuses_non_bytes(self) -> None:
        """
        A payload that is not C{bytes} is refused with L{TypeError}.
        """
        log = self.open_log()
        with self.assertRaises(TypeError):
            log.append(["text"])  # type: ignore[list-item]

    def test_closed(self) -> None:
        """
        After close(), appends and compactions errback with L{JournalClosed};
        closing again is harmless.
        """
        log = self.open_log()
        self.successResultOf(log.close())
        self.failureResultOf(log.append([b"late"]), JournalClosed)
        self.failureResultOf(log.compact([]), JournalClosed)
        self.successResultOf(log.close())

    def test_claim_conflict_appends_nothing(self) -> None:
        """
        An append whose claim does not hold fails with L{ClaimConflict}
        naming it, and appends nothing and claims nothing, even when its
        other claims held.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"a"], [Claim("code:1", "used")]))
        failure = self.failureResultOf(log.append([b"b"], [Claim("code:1", "used")]), ClaimConflict)
        self.assertEqual(failure.value.key, "code:1")
        self.failureResultOf(
            log.append([b"c"], [Claim("user:ann", "1"), Claim("code:1", "again")]), ClaimConflict)
        self.successResultOf(log.append([b"d"], [Claim("user:ann", "2")]))
        self.assertEqual(log.record_count, 2)
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"a", b"d"])

    def test_claim_compare_and_set(self) -> None:
        """
        A claim that expects a value succeeds only while the key holds it
        (a refresh family's rotation); one that expects anything always
        does (its revocation), and a stale rotation after it fails.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"issued"], [Claim("grant:g", "r1")]))
        self.successResultOf(log.append([b"rotated"], [Claim("grant:g", "r2", expect="r1")]))
        self.failureResultOf(log.append([b"stale"], [Claim("grant:g", "r3", expect="r1")]), ClaimConflict)
        self.successResultOf(log.append([b"revoked"], [Claim("grant:g", "revoked", expect=Expect.ANY)]))
        self.failureResultOf(log.append([b"late"], [Claim("grant:g", "r4", expect="r2")]), ClaimConflict)
        self.successResultOf(log.append([], [Claim("grant:h", "x", expect=Expect.ANY)]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"issued", b"rotated", b"revoked"])

    def test_sweep_claims(self) -> None:
        """
        Claims that expired before the sweep's time are forgotten (their key
        can be claimed again); the others stay.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"a"], [Claim("code:x", "used", expires=100.0),
                                                  Claim("user:bob", "1")]))
        self.assertEqual(self.successResultOf(log.sweep_claims(100.0)), 0)
        self.assertEqual(self.successResultOf(log.sweep_claims(100.5)), 1)
        self.successResultOf(log.append([b"b"], [Claim("code:x", "used")]))
        self.failureResultOf(log.append([b"c"], [Claim("user:bob", "2")]), ClaimConflict)

    def test_follow_delivers_appends_with_positions(self) -> None:
        """
        The follower gets every record committed after those replayed, with
        its position (counting on from the replayed ones), before its
        append fires; a refused append delivers nothing; sync() fires once
        everything is delivered.
        """
        log = self.open_log()
        self.successResultOf(log.append([b"a", b"b"]))
        log = self.reopen(log)
        self.assertEqual(list(log.replay()), [b"a", b"b"])
        self.assertEqual(log.position, 2)
        delivered: list[tuple[int, bytes]] = []
        log.follow(lambda position, payload: delivered.append((position, payload)))
        seen_at_ack: list[list[tuple[int, bytes]]] = []
        log.append([b"c", b"d"]).addCallback(lambda _: seen_at_ack.append(list(delivered)))
        self.successResultOf(log.append([b"e"], [Claim("k", "1")]))
        self.failureResultOf(log.append([b"f"], [Claim("k", "1")]), ClaimConflict)
        self.successResultOf(log.sync())
        self.assertEqual(seen_at_ack, [[(3, b"c"), (4, b"d")]])
        self.assertEqual(delivered, [(3, b"c"), (4, b"d"), (5, b"e")])
        self.assertEqual(log.position, 5)
        with self.assertRaises(RuntimeError):
            log.follow(lambda position, payload: None)


class FileJournalContractTests(EventLogContract):
    """
    The contract, for L{FileJournal} with its writer run inline.
    """

    __test__ = True

    def open_log(self) -> IEventLog:
        self.directory = make_directory(self.addCleanup)
        return self._open()

    def _open(self) -> IEventLog:
        journal = open_inline(self.directory)
        self.addCleanup(journal.close)
        return journal

    def reopen(self, log: IEventLog) -> IEventLog:
        self.successResultOf(log.close())
        journal = self._open()
        self.assertEqual(journal.byte_count, file_size(self.directory))
        return journal


class MemoryJournalContractTests(EventLogContract):
    """
    The contract, for L{MemoryJournal}.
    """

    __test__ = True

    def open_log(self) -> IEventLog:
        return MemoryJournal()

    def reopen(self, log: IEventLog) -> IEventLog:
        assert isinstance(log, MemoryJournal)
        self.successResultOf(log.close())
        return MemoryJournal(log.payloads)

    def test_fail(self) -> None:
        """
        L{MemoryJournal.fail} makes later appends and compactions errback
        with L{JournalFailed}, as a write error would.
        """
        log = MemoryJournal([b"a"])
        log.fail(OSError(28, "No space left on device"))
        self.failureResultOf(log.append([b"b"]), JournalFailed)
        self.failureResultOf(log.compact([]), JournalFailed)
        self.assertEqual(log.payloads, [b"a"])


class SharedLogNodeContractTests(EventLogContract):
    """
    The contract, for a node of a L{MemorySharedLog} (its follower's
    records delivered by hand).
    """

    __test__ = True

    def open_log(self) -> IEventLog:
        return MemorySharedLog().node()

    def reopen(self, log: IEventLog) -> IEventLog:
        assert isinstance(log, SharedLogNode)
        self.successResultOf(log.close())
        return log.shared.node()

    def test_follow_delivers_appends_with_positions(self) -> None:
        """
        (Delivered by L{SharedLogNode.step}.)
        """
        log = self.open_log()
        assert isinstance(log, SharedLogNode)
        delivered: list[tuple[int, bytes]] = []
        log.follow(lambda position, payload: delivered.append((position, payload)))
        acked = log.append([b"a"])
        synced = log.sync()
        self.assertNoResult(acked)
        self.assertNoResult(synced)
        self.assertEqual(log.step(), 1)
        self.successResultOf(acked)
        self.successResultOf(synced)
        self.assertEqual(delivered, [(1, b"a")])


class PostgresLogContractTests(EventLogContract):
    """
    The contract, for L{PostgresLog} with its jobs run inline.
    """

    __test__ = True

    def open_log(self) -> IEventLog:
        self.uri = fresh_database()
        return self._open()

    def _open(self) -> IEventLog:
        from oauthd.eventlog.postgresql import open_postgres_log

        log = open_postgres_log(self.uri, InlineReactor(), pool=InlinePool(), listen=False,
                                partition_size=1000)
        self.addCleanup(log.close)
        return log

    def reopen(self, log: IEventLog) -> IEventLog:
        self.successResultOf(log.close())
        return self._open()
