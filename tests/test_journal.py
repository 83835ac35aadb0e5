"""
Tests for the file journal (L{oauthd.eventlog.FileJournal}): group commit,
failure handling, compaction, crash recovery, repair and its entry point,
locking and file modes.  The writer runs inline or is stepped by hand; the
contract every event log honours is in C{test_eventlog_contract}, and the
real-thread, subprocess and property tests live in the other
C{test_journal_*} modules.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zlib
from collections.abc import Iterator
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog.files import UnsafeFile, lock_directory
from oauthd.eventlog import (
    HEADER_SIZE,
    JOURNAL_NAME,
    LOCK_NAME,
    MAX_PAYLOAD,
    RECORD_OVERHEAD,
    TEMP_NAME,
    CompactionInProgress,
    FileJournal,
    JournalClosed,
    JournalCorrupt,
    JournalFailed,
    JournalLocked,
    repair,
)
from oauthd.testing import InlineReactor, SteppingPool
from tests.journal_doubles import (
    RecordingFsync,
    make_directory,
    open_inline,
    read_journal,
    temp_exists,
)


T = TypeVar("T")


def file_size(directory: str) -> int:
    return os.path.getsize(os.path.join(directory, JOURNAL_NAME))


def journal_bytes(directory: str) -> bytes:
    with open(os.path.join(directory, JOURNAL_NAME), "rb") as f:
        return f.read()


def write_journal_bytes(directory: str, data: bytes) -> None:
    with open(os.path.join(directory, JOURNAL_NAME), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------
# Group commit and the writer thread


class SteppedJournalCase(SynchronousTestCase):
    """
    A file journal in a fresh directory whose writer the test steps, with
    its fsyncs recorded.
    """

    def setUp(self) -> None:
        self.directory = make_directory(self.addCleanup)
        self.pool = SteppingPool()
        self.fsync = RecordingFsync()

    def open(self, **kwargs: object) -> FileJournal:
        return FileJournal.open(
            self.directory,
            InlineReactor(),
            pool=self.pool,  # type: ignore[arg-type]
            fsync_function=self.fsync,
            **kwargs,  # type: ignore[arg-type]
        )


class GroupCommitTests(SteppedJournalCase):
    """
    The writer takes one job at a time; appends that arrive while a
    write+fsync runs all go into the next one.
    """

    def open(self, **kwargs: object) -> FileJournal:
        journal = super().open(**kwargs)
        self.fsync.calls.clear()
        return journal

    def test_appends_during_fsync_share_the_next_fsync(self) -> None:
        """
        Three appends issued while the first write+fsync runs are written by
        exactly one following write+fsync, and none of their Deferreds fires
        before that fsync completes.
        """
        journal = self.open()
        first = journal.append([b"first"])
        self.assertEqual(len(self.pool.jobs), 1)
        later = [journal.append([b"later %d" % i]) for i in range(3)]
        self.assertEqual(len(self.pool.jobs), 1, "one job in flight at a time")

        fired_during_fsync: list[list[bool]] = []
        self.fsync.before = lambda target: fired_during_fsync.append(
            [d.called for d in later]
        )
        self.pool.run_one()
        self.assertIsNone(self.successResultOf(first))
        for d in later:
            self.assertNoResult(d)
        self.assertEqual(len(self.pool.jobs), 1)

        self.pool.run_one()
        for d in later:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.pool.jobs, [])
        self.assertEqual(fired_during_fsync, [[False] * 3, [False] * 3])
        one = RECORD_OVERHEAD + len(b"later 0")
        self.assertEqual(
            self.fsync.journal_syncs(),
            [HEADER_SIZE + RECORD_OVERHEAD + 5, HEADER_SIZE + RECORD_OVERHEAD + 5 + 3 * one],
        )

    def test_append_from_callback_joins_next_group(self) -> None:
        """
        Appends made by the callbacks of an acknowledged group (the next step
        of each client) queue for one write+fsync, not one each.
        """
        journal = self.open()
        chained = []
        for i in range(5):
            d = journal.append([b"%d" % i])
            d.addCallback(lambda _, i=i: chained.append(journal.append([b"next %d" % i])))
        self.pool.run_all()
        self.assertEqual(len(chained), 5)
        for d in chained:
            self.successResultOf(d)
        # First append alone, then the other four, then the five chained ones.
        self.assertEqual(len(self.fsync.journal_syncs()), 3)

    def test_a_follower_failing_on_one_append_leaves_its_group_answered(self) -> None:
        """
        The follower raises on the record of one append of a group: that
        append fails with what it raised; the others of the group, before
        and after it, still fire (none waits for ever), and the journal
        goes on.
        """
        journal = self.open()

        def follower(position: int, payload: bytes) -> None:
            if payload == b"bad":
                raise RuntimeError("the follower failed")

        journal.follow(follower)
        held = journal.append([b"held"])
        group = [journal.append([p]) for p in (b"before", b"bad", b"after")]
        self.pool.run_all()
        self.assertIsNone(self.successResultOf(held))
        self.assertIsNone(self.successResultOf(group[0]))
        self.failureResultOf(group[1], RuntimeError)
        self.assertIsNone(self.successResultOf(group[2]))
        later = journal.append([b"later"])
        self.pool.run_all()
        self.assertIsNone(self.successResultOf(later))

    def test_without_group_commit(self) -> None:
        """
        With C{group_commit=False} every append call gets its own fsync.
        """
        journal = self.open(group_commit=False)
        ds = [journal.append([b"%d" % i]) for i in range(4)]
        self.pool.run_all()
        for d in ds:
            self.successResultOf(d)
        self.assertEqual(len(self.fsync.journal_syncs()), 4)

    def test_fsync_false(self) -> None:
        """
        With C{fsync=False} nothing is fsync'd, and appends still land.
        """
        journal = self.open(fsync=False)
        self.successResultOf(self.settle(journal.append([b"a"])))
        self.assertEqual(self.fsync.calls, [])
        self.successResultOf(self.settle(journal.close()))
        self.assertEqual(read_journal(self.directory), [b"a"])

    def settle(self, d: Deferred[T]) -> Deferred[T]:
        self.pool.run_all()
        return d

    def test_empty_append_is_a_barrier(self) -> None:
        """
        An append of no payloads fires at once when nothing is pending, and
        otherwise with the next write+fsync.
        """
        journal = self.open()
        self.successResultOf(journal.append([]))
        first = journal.append([b"a"])
        barrier = journal.append([])
        self.assertNoResult(barrier)
        self.pool.run_one()
        self.successResultOf(first)
        self.assertNoResult(barrier)
        self.pool.run_all()
        self.successResultOf(barrier)

    def test_close_flushes_pending_appends(self) -> None:
        """
        close() writes the appends still queued, then releases the lock.
        """
        journal = self.open()
        ds = [journal.append([b"%d" % i]) for i in range(3)]
        closed = journal.close()
        self.failureResultOf(journal.append([b"too late"]), JournalClosed)
        self.assertNoResult(closed)
        self.pool.run_all()
        for d in ds:
            self.successResultOf(d)
        self.successResultOf(closed)
        self.assertEqual(read_journal(self.directory), [b"0", b"1", b"2"])


class WriteFailureTests(SteppedJournalCase):
    """
    A failed write or fsync puts the journal in a failed state: that append
    and every later one errback, and a log line says so.
    """

    def setUp(self) -> None:
        super().setUp()
        self.journal = self.open()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_fsync_failure(self) -> None:
        """
        When an fsync fails its append errbacks with L{JournalFailed}
        (caused by the OSError), so do the appends queued behind it and
        every later append and compaction, and a critical log line names
        the failed state.  close() still releases the lock.
        """
        ok = self.journal.append([b"ok"])
        self.pool.run_all()
        self.successResultOf(ok)

        self.fsync.fail_when = lambda target: True
        failing = self.journal.append([b"doomed"])
        queued = self.journal.append([b"queued"])
        self.pool.run_all()
        failure = self.failureResultOf(failing, JournalFailed)
        self.assertIsInstance(failure.value.__cause__, OSError)
        self.failureResultOf(queued, JournalFailed)
        self.failureResultOf(self.journal.append([b"after"]), JournalFailed)
        self.failureResultOf(self.journal.compact([]), JournalFailed)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

        [event] = [e for e in self.events if "failed state" in e["log_format"]]
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertEqual(event["path"], self.journal.path)

        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        # The lock is released: the directory opens again, with the
        # acknowledged record (and perhaps the unacknowledged one, whose
        # write went through before its fsync failed).
        self.assertEqual(read_journal(self.directory)[0], b"ok")

    def test_failure_during_compaction_rename_fsync(self) -> None:
        """
        If fsyncing the directory after the rename fails, the rename may not
        be durable: the journal enters the failed state and the appends the
        compaction carried errback.
        """
        self.fsync.fail_when = lambda target: target == self.directory
        self.successResultOf(self.settle(self.journal.append([b"a"])))
        compacted = self.journal.compact([b"snapshot"])
        carried = self.journal.append([b"carried"])
        self.pool.run_all()
        self.failureResultOf(compacted, JournalFailed)
        self.failureResultOf(carried, JournalFailed)
        self.failureResultOf(self.journal.append([b"b"]), JournalFailed)
        self.flushLoggedErrors(OSError)
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)

    def settle(self, d: Deferred[T]) -> Deferred[T]:
        self.pool.run_all()
        return d


# ---------------------------------------------------------------------------
# Compaction on the file journal


class CompactionTests(SteppedJournalCase):
    """
    Compaction consumes the snapshot a slice at a time, keeps accepting
    appends and replaces the file atomically.
    """

    def setUp(self) -> None:
        super().setUp()
        self.journal = self.open()

    def tearDown(self) -> None:
        self.journal.close()
        self.pool.run_all()

    def append(self, *payloads: bytes) -> None:
        d = self.journal.append(list(payloads))
        self.pool.run_all()
        self.successResultOf(d)

    def test_appends_interleaved_with_compaction(self) -> None:
        """
        Appends made while the snapshot is being written are acknowledged
        before the compaction ends, go to the old file meanwhile, and end up
        in the new file after the snapshot; so does an append that was in
        flight when compact() was called.
        """
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        self.journal = self.open(slice_records=1000)
        self.append(b"old")
        in_flight = self.journal.append([b"in flight"])
        pulled = []

        def snapshot() -> Iterator[bytes]:
            for i in range(20_000):
                pulled.append(i)
                yield b"live %d" % i

        compacted = self.journal.compact(snapshot())
        self.assertLessEqual(len(pulled), 1000, "one slice per reactor turn")
        during = []
        for i in range(10):
            during.append(self.journal.append([b"during %d" % i]))
            self.pool.run_one()
            self.pool.run_one()
        self.successResultOf(in_flight)
        acknowledged_early = [d.called for d in during]
        self.assertNoResult(compacted)
        self.pool.run_all()
        self.successResultOf(compacted)
        self.assertTrue(any(acknowledged_early))
        for d in during:
            self.successResultOf(d)
        self.append(b"after")

        expected = (
            [b"live %d" % i for i in range(20_000)]
            + [b"in flight"]
            + [b"during %d" % i for i in range(10)]
            + [b"after"]
        )
        self.assertEqual(self.journal.record_count, len(expected))
        self.assertEqual(self.journal.byte_count, file_size(self.directory))
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        self.assertEqual(read_journal(self.directory), expected)

    def test_compact_from_acknowledgement_callback(self) -> None:
        """
        compact() called from the callback of an acknowledged append (the
        state layer applying it, then deciding to compact) carries over
        exactly the appends of the same group whose Deferreds have not fired.
        """
        first = self.journal.append([b"first"])
        group = [self.journal.append([name]) for name in (b"a", b"b", b"c")]
        self.pool.run_one()
        self.successResultOf(first)
        compactions = []
        group[1].addCallback(
            lambda _: compactions.append(self.journal.compact([b"state after b"]))
        )
        self.pool.run_all()
        [compacted] = compactions
        self.successResultOf(compacted)
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        self.assertEqual(read_journal(self.directory), [b"state after b", b"c"])

    def test_replace_is_atomic(self) -> None:
        """
        The new file is written as the temporary file and fsync'd, renamed
        over the journal, then the directory is fsync'd; until the rename
        the journal is the old file, whole.
        """
        self.append(b"old")
        old = journal_bytes(self.directory)
        seen = []
        self.fsync.before = lambda target: seen.append(
            (os.path.basename(target), journal_bytes(self.directory))
        )
        compacted = self.journal.compact([b"new"])
        self.pool.run_all()
        self.successResultOf(compacted)
        names = [name for name, _ in seen]
        self.assertEqual(names[-1], os.path.basename(self.directory))
        self.assertEqual(set(names[:-1]), {TEMP_NAME})
        for _, journal_then in seen[:-1]:
            self.assertEqual(journal_then, old, "the old file, until the rename")
        self.assertNotEqual(seen[-1][1], old)
        self.assertFalse(temp_exists(self.directory))
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        self.assertEqual(read_journal(self.directory), [b"new"])

    def test_compaction_write_failure_keeps_old_file(self) -> None:
        """
        If writing the new file fails before the rename, compaction errbacks,
        the old file stays in use and the appends it had taken are written
        there instead; the temporary file is removed.
        """
        self.append(b"old")
        self.fsync.fail_when = lambda target: target.endswith(TEMP_NAME)
        compacted = self.journal.compact([b"new"])
        carried = self.journal.append([b"carried"])
        self.pool.run_all()
        self.failureResultOf(compacted, OSError)
        self.flushLoggedErrors()
        self.successResultOf(carried)
        self.assertFalse(temp_exists(self.directory))
        self.fsync.fail_when = lambda target: False
        self.append(b"later")
        closed = self.journal.close()
        self.pool.run_all()
        self.successResultOf(closed)
        self.assertEqual(read_journal(self.directory), [b"old", b"carried", b"later"])

    def test_one_compaction_at_a_time(self) -> None:
        """
        compact() while a compaction runs errbacks with
        L{CompactionInProgress}.
        """
        first = self.journal.compact([b"a"])
        self.failureResultOf(self.journal.compact([b"b"]), CompactionInProgress)
        self.pool.run_all()
        self.successResultOf(first)

    def test_replay_unavailable_after_compaction(self) -> None:
        """
        replay() gives the records present at open; after a compaction it
        raises instead of giving something else.
        """
        compacted = self.journal.compact([])
        self.pool.run_all()
        self.successResultOf(compacted)
        self.assertRaises(RuntimeError, self.journal.replay)

    def test_replay_is_given_once(self) -> None:
        """
        replay() hands over the payloads verified at open; a second call
        raises rather than give nothing.
        """
        self.assertEqual(list(self.journal.replay()), [])
        self.assertRaises(RuntimeError, self.journal.replay)

    def test_new_file_is_private(self) -> None:
        """
        The compacted journal is mode 0600 even under umask 0.
        """
        old = os.umask(0)
        try:
            compacted = self.journal.compact([b"x"])
            self.pool.run_all()
        finally:
            os.umask(old)
        self.successResultOf(compacted)
        self.assertEqual(mode(os.path.join(self.directory, JOURNAL_NAME)), 0o600)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------
# Crash recovery, damage and repair


class RecoveryTests(SynchronousTestCase):
    """
    Opening cuts off a torn tail with a warning, and refuses a file damaged
    before its tail; repair() recovers every verifiable record.
    """

    def setUp(self) -> None:
        self.directory = make_directory(self.addCleanup)
        self.path = os.path.join(self.directory, JOURNAL_NAME)
        self.payloads = [b"first record", b"second record", b"third record"]
        journal = open_inline(self.directory)
        for payload in self.payloads:
            self.successResultOf(journal.append([payload]))
        self.successResultOf(journal.close())
        self.offsets = [HEADER_SIZE]
        for payload in self.payloads:
            self.offsets.append(self.offsets[-1] + RECORD_OVERHEAD + len(payload))
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def open(self) -> FileJournal:
        journal = open_inline(self.directory)
        self.addCleanup(journal.close)
        return journal

    def torn_tail_events(self) -> list[dict[str, object]]:
        return [e for e in self.events if "torn record" in e["log_format"]]

    def test_replay_lets_go_of_each_payload_once_given(self) -> None:
        """
        Replay holds a payload only until it has given it: one the state
        does not keep is freed then, not when replay ends, so a start needs
        no memory for the dead records of a big journal all at once.
        """
        replayed = self.open().replay()
        first = next(replayed)
        # Held by this frame and getrefcount's argument alone.
        self.assertEqual(sys.getrefcount(first), 2)
        self.assertEqual([first, *replayed], self.payloads)

    def assert_tail_cut(self, dropped: int, kept: list[bytes]) -> str:
        """
        Open cuts C{dropped} bytes off the end with a warning naming the
        side file that keeps them, and replays C{kept}; appends work after.

        @return: the side file.
        """
        cut = journal_bytes(self.directory)[-dropped:]
        earlier = len(self.torn_tail_events())
        journal = self.open()
        self.assertEqual(list(journal.replay()), kept)
        [event] = self.torn_tail_events()[earlier:]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["dropped_bytes"], dropped)
        self.assertEqual(event["path"], self.path)
        side = event["kept_in"]
        assert isinstance(side, str)
        self.assertEqual(os.path.dirname(side), self.directory)
        with open(side, "rb") as f:
            self.assertEqual(f.read(), cut, "the side file holds exactly the bytes cut")
        self.assertEqual(mode(side), 0o600)
        self.assertIn(side, formatEvent(event))
        self.assertEqual(journal.byte_count, file_size(self.directory))
        self.successResultOf(journal.append([b"after the crash"]))
        self.successResultOf(journal.close())
        self.assertEqual(read_journal(self.directory), kept + [b"after the crash"])
        return side

    def test_torn_tail_mid_payload(self) -> None:
        """
        A file cut in the middle of its last record's payload loses just
        that record, kept in a side file the warning names; the warning
        gives the bytes dropped; appends work after.
        """
        cut = self.offsets[2] + RECORD_OVERHEAD + 4
        os.truncate(self.path, cut)
        side = self.assert_tail_cut(cut - self.offsets[2], self.payloads[:2])
        self.assertEqual(side, f"{self.path}.torn-at-{self.offsets[2]}")

    def test_torn_tail_mid_header(self) -> None:
        """
        A last record cut inside its 8-byte frame header is cut off too.
        """
        cut = self.offsets[2] + 3
        os.truncate(self.path, cut)
        self.assert_tail_cut(3, self.payloads[:2])

    def test_zero_filled_tail(self) -> None:
        """
        Zero bytes after the last record (a file extended but never written,
        as after a power cut) are cut off: zeros are not a valid record.
        """
        with open(self.path, "ab") as f:
            f.write(b"\x00" * 4096)
        self.assert_tail_cut(4096, self.payloads)

    def test_large_zero_filled_tail(self) -> None:
        """
        Megabytes of zeros after the last record are recognised as a torn
        tail without scanning them byte by byte (this would take seconds).
        """
        with open(self.path, "ab") as f:
            f.write(b"\x00" * (8 << 20))
        self.assert_tail_cut(8 << 20, self.payloads)

    def test_last_record_zero_filled_from_inside(self) -> None:
        """
        A last record whose frame was written but whose payload is zeros
        from some point to the end of the file (blocks the interrupted
        write never filled) is a torn append: cut off and kept aside.
        """
        with open(self.path, "r+b") as f:
            f.seek(self.offsets[2] + RECORD_OVERHEAD + 5)
            f.write(b"\x00" * (self.offsets[3] - self.offsets[2] - RECORD_OVERHEAD - 5))
            f.write(b"\x00" * 100)
        self.assert_tail_cut(self.offsets[3] + 100 - self.offsets[2], self.payloads[:2])

    def test_side_files_never_overwritten(self) -> None:
        """
        A second torn tail at the same offset gets a side file of its own.
        """
        os.truncate(self.path, self.offsets[2] + 3)
        first = self.assert_tail_cut(3, self.payloads[:2])
        with open(self.path, "r+b") as f:
            f.truncate(self.offsets[2] + 5)
        second = self.assert_tail_cut(5, self.payloads[:2])
        self.assertEqual(second, first + ".2")
        with open(first, "rb") as f:
            self.assertEqual(len(f.read()), 3)

    def test_flipped_bit_in_last_record_refused(self) -> None:
        """
        One flipped bit in the last record (acknowledged: it is whole) is
        not a torn append: open refuses with the offset and the repair
        command instead of silently undoing that change, and leaves the
        file alone; repair() then keeps the records before it and a copy
        of the damaged file.
        """
        flip(self.path, self.offsets[2] + RECORD_OVERHEAD + 5, 0x01)
        damaged = journal_bytes(self.directory)
        self.assert_refused(self.offsets[2])
        self.assertEqual(self.torn_tail_events(), [])
        self.assertEqual(sorted(os.listdir(self.directory)), sorted([JOURNAL_NAME, LOCK_NAME]))
        self.assert_repaired(damaged, self.payloads[:2], 1)

    def test_flipped_bit_in_last_checksum_or_length_refused(self) -> None:
        """
        So is a flipped bit in its checksum, or one that makes its length
        shorter (the record still fits in the file, and what follows it is
        not zeros).
        """
        for offset, mask in [(self.offsets[2] + 6, 0x10), (self.offsets[2] + 3, 0x04)]:
            flip(self.path, offset, mask)
            self.assert_refused(self.offsets[2])
            flip(self.path, offset, mask)
        self.assertEqual(list(self.open().replay()), self.payloads)

    def test_whole_bad_record_before_zeros_refused(self) -> None:
        """
        A whole last record that does not verify, followed by zeros, is
        damage, not a torn append: the zeros start after it.
        """
        flip(self.path, self.offsets[3] - 1)
        with open(self.path, "ab") as f:
            f.write(b"\x00" * 4096)
        self.assert_refused(self.offsets[2])

    def test_garbage_then_a_valid_record_refused(self) -> None:
        """
        Bytes that do not verify followed by a record that does are damage
        in the middle, even when the garbage looks like a short record.
        """
        journal = self.open()
        self.successResultOf(journal.append([b"fourth record"]))
        self.successResultOf(journal.close())
        with open(self.path, "r+b") as f:
            f.seek(self.offsets[2])
            f.write(b"\x00\x00\xff\xff")
        self.assert_refused(self.offsets[2])

    def test_repair_keeps_a_torn_tail(self) -> None:
        """
        repair() cuts a torn tail too, and its copy of the damaged file
        keeps the bytes cut.
        """
        with open(self.path, "ab") as f:
            f.write(b"\x00" * 4096)
        self.assert_repaired(journal_bytes(self.directory), self.payloads, 1)

    def test_intact_journal_logs_nothing(self) -> None:
        """
        An intact journal opens without a warning and without change.
        """
        before = journal_bytes(self.directory)
        self.assertEqual(list(self.open().replay()), self.payloads)
        self.assertEqual(self.torn_tail_events(), [])
        self.assertEqual(journal_bytes(self.directory), before)

    def assert_refused(self, offset: int) -> JournalCorrupt:
        before = journal_bytes(self.directory)
        with self.assertRaises(JournalCorrupt) as caught:
            open_inline(self.directory)
        error = caught.exception
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn(self.path, message)
        self.assertIn(f"byte offset {offset}", message)
        self.assertIn(f"oauthctl repair --data {self.directory}", message)
        self.assertEqual((error.path, error.offset), (self.path, offset))
        self.assertEqual(journal_bytes(self.directory), before, "nothing changed")
        return error

    def test_flipped_byte_in_middle_record(self) -> None:
        """
        A flipped byte in the middle record makes open refuse with
        L{JournalCorrupt} naming the file and the offset; repair() then keeps
        every other record, reports what it skipped and keeps a copy of the
        damaged file; the repaired journal opens.
        """
        flip(self.path, self.offsets[1] + RECORD_OVERHEAD + 3)
        damaged = journal_bytes(self.directory)
        self.assert_refused(self.offsets[1])
        self.assert_repaired(damaged, [self.payloads[0], self.payloads[2]], 1)

    def assert_repaired(self, damaged: bytes, kept: list[bytes], regions: int) -> None:
        report = repair(self.directory, now=1_700_000_000)
        self.assertEqual(report.kept_records, len(kept))
        self.assertEqual(report.damaged_regions, regions)
        self.assertEqual(
            report.skipped_bytes,
            len(damaged) - HEADER_SIZE - sum(RECORD_OVERHEAD + len(p) for p in kept),
        )
        self.assertEqual(
            report.damaged_copy, self.path + ".damaged-20231114T221320Z"
        )
        assert report.damaged_copy is not None
        with open(report.damaged_copy, "rb") as f:
            self.assertEqual(f.read(), damaged)
        self.assertEqual(list(self.open().replay()), kept)
        self.assertIn("kept", report.describe())

    def test_damaged_length_field(self) -> None:
        """
        A damaged length field in the middle is refused at its offset and
        repaired by resynchronising on the next record.
        """
        flip(self.path, self.offsets[1] + 1)
        damaged = journal_bytes(self.directory)
        self.assert_refused(self.offsets[1])
        self.assert_repaired(damaged, [self.payloads[0], self.payloads[2]], 1)

    def test_absurd_length_is_damage(self) -> None:
        """
        A length over the cap is treated as damage, not read.
        """
        with open(self.path, "r+b") as f:
            f.seek(self.offsets[0])
            f.write((MAX_PAYLOAD + 1).to_bytes(4, "big"))
        error = self.assert_refused(self.offsets[0])
        self.assertIn("cap", str(error))

    def test_repair_clean_journal(self) -> None:
        """
        repair() on an undamaged journal changes nothing and keeps no copy.
        """
        before = journal_bytes(self.directory)
        report = repair(self.directory, now=1_700_000_000)
        self.assertEqual((report.kept_records, report.skipped_bytes), (3, 0))
        self.assertIsNone(report.damaged_copy)
        self.assertEqual(journal_bytes(self.directory), before)
        self.assertEqual(
            sorted(os.listdir(self.directory)), sorted([JOURNAL_NAME, LOCK_NAME])
        )

    def test_repair_refuses_while_locked(self) -> None:
        """
        repair() will not touch a journal a running oauthd holds.
        """
        self.open()
        with self.assertRaises(JournalLocked) as caught:
            repair(self.directory, now=1_700_000_000)
        self.assertIn("holds the lock", str(caught.exception))

    def test_repair_files_are_private(self) -> None:
        """
        Under umask 0 the repaired journal and the damaged copy are 0600.
        """
        flip(self.path, self.offsets[1] + RECORD_OVERHEAD)
        old = os.umask(0)
        try:
            report = repair(self.directory, now=1_700_000_000)
        finally:
            os.umask(old)
        assert report.damaged_copy is not None
        self.assertEqual(mode(self.path), 0o600)
        self.assertEqual(mode(report.damaged_copy), 0o600)

    def test_damaged_salt(self) -> None:
        """
        A header whose salt is damaged is refused at open (offset 0); since
        no record verifies any more, repair() refuses to turn the journal
        into an empty one and leaves the file as it is.
        """
        flip(self.path, 14)  # inside the salt
        damaged = journal_bytes(self.directory)
        self.assert_refused(0)
        with self.assertRaises(JournalCorrupt) as caught:
            repair(self.directory, now=1_700_000_000)
        self.assertIn("refusing to replace it with an empty journal", str(caught.exception))
        self.assertEqual(journal_bytes(self.directory), damaged)
        self.assertEqual(
            sorted(os.listdir(self.directory)), sorted([JOURNAL_NAME, LOCK_NAME])
        )

    def test_header_checksum_damaged_only(self) -> None:
        """
        If only the header's own checksum is damaged, repair() keeps every
        record.
        """
        flip(self.path, HEADER_SIZE - 1)
        damaged = journal_bytes(self.directory)
        self.assert_refused(0)
        report = repair(self.directory, now=1_700_000_000)
        self.assertTrue(report.header_damaged)
        self.assertEqual((report.kept_records, report.skipped_bytes), (3, 0))
        assert report.damaged_copy is not None
        with open(report.damaged_copy, "rb") as f:
            self.assertEqual(f.read(), damaged)
        self.assertEqual(list(self.open().replay()), self.payloads)

    def test_bad_magic(self) -> None:
        """
        A file that is not a journal is refused with a clear message, and
        repair() will not rewrite it.
        """
        write_journal_bytes(self.directory, b"#!/bin/sh\necho hello\n" + b"x" * 40)
        with self.assertRaises(JournalCorrupt) as caught:
            open_inline(self.directory)
        self.assertIn("not an oauthd journal", str(caught.exception))
        self.assertRaises(JournalCorrupt, repair, self.directory, now=1_700_000_000)

    def test_unsupported_version(self) -> None:
        """
        A journal of another format version is refused, naming the version.
        """
        data = bytearray(journal_bytes(self.directory))
        data[8:12] = (2).to_bytes(4, "big")
        write_journal_bytes(self.directory, bytes(data))
        with self.assertRaises(JournalCorrupt) as caught:
            open_inline(self.directory)
        self.assertIn("format version 2", str(caught.exception))
        self.assertRaises(JournalCorrupt, repair, self.directory, now=1_700_000_000)

    def test_too_short(self) -> None:
        """
        A file too short for the header is refused.
        """
        write_journal_bytes(self.directory, b"OAUTH")
        with self.assertRaises(JournalCorrupt) as caught:
            open_inline(self.directory)
        self.assertIn("too short", str(caught.exception))

    def test_forged_frame_inside_payload_does_not_verify(self) -> None:
        """
        A payload that embeds a well-formed frame (computed without the
        file's secret salt) is not taken for a record when the real record
        around it is torn, so the tear is cut off rather than reported as
        damage, and repair could not resurrect the forgery.
        """
        forged_payload = b"granted: admin"
        length = len(forged_payload).to_bytes(4, "big")
        forged = length + zlib.crc32(length + forged_payload).to_bytes(4, "big") + forged_payload
        journal = self.open()
        self.successResultOf(journal.append([b"prefix " + forged + b" suffix"]))
        self.successResultOf(journal.close())
        os.truncate(self.path, file_size(self.directory) - 3)
        self.assertEqual(list(self.open().replay()), self.payloads)


def flip(path: str, offset: int, mask: int = 0x40) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ mask]))


class RepairEntryPointTests(SynchronousTestCase):
    """
    C{python -m oauthd.eventlog.repair DIR}, the helper C{oauthctl repair}
    runs: one line of JSON on stdout, exit status 0 or 1.
    """

    def setUp(self) -> None:
        self.directory = make_directory(self.addCleanup)
        journal = open_inline(self.directory)
        for payload in [b"one", b"two", b"three"]:
            self.successResultOf(journal.append([payload]))
        self.successResultOf(journal.close())
        flip(os.path.join(self.directory, JOURNAL_NAME), HEADER_SIZE + 11 + 9)

    def run_entry_point(self) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        result = subprocess.run(
            [sys.executable, "-m", "oauthd.eventlog.repair", self.directory],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertEqual(result.stderr, "")
        [line] = result.stdout.splitlines()
        outcome = json.loads(line)
        assert isinstance(outcome, dict)
        return result, outcome

    def test_repairs(self) -> None:
        """
        It repairs, prints the report's fields and its description, and
        exits 0.
        """
        result, outcome = self.run_entry_point()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("kept 2 verifiable records", str(outcome["description"]))
        self.assertEqual(read_journal(self.directory), [b"one", b"three"])
        self.assertEqual(
            set(outcome),
            {
                "journal", "kept_records", "skipped_bytes", "damaged_regions",
                "header_damaged", "damaged_copy", "description",
            },
        )
        self.assertEqual(outcome["kept_records"], 2)

    def test_error(self) -> None:
        """
        On an error it prints it, in one line, as the JSON object's
        C{error}, and exits 1.
        """
        fd = lock_directory(self.directory, LOCK_NAME)
        self.addCleanup(os.close, fd)
        result, outcome = self.run_entry_point()
        self.assertEqual(result.returncode, 1)
        self.assertEqual(list(outcome), ["error"])
        self.assertIn("holds the lock", str(outcome["error"]))


# ---------------------------------------------------------------------------
# Lock and modes


class LockAndModeTests(SynchronousTestCase):
    """
    One process per data directory; private directory and files.
    """

    def setUp(self) -> None:
        self.directory = make_directory(self.addCleanup)

    def test_second_open_refused(self) -> None:
        """
        A second journal on the same directory is refused with
        L{JournalLocked}, whose message names the directory and the pid of
        the holder; once the first is closed, it opens.
        """
        first = open_inline(self.directory)
        with self.assertRaises(JournalLocked) as caught:
            open_inline(self.directory)
        message = str(caught.exception)
        self.assertIn(
            f"another oauthd instance (pid {os.getpid()}) holds the lock on"
            f" {self.directory}",
            message,
        )
        self.successResultOf(first.close())
        second = open_inline(self.directory)
        self.successResultOf(second.close())

    def test_modes_under_permissive_umask(self) -> None:
        """
        Under umask 0, the directory is 0700 and the journal and lock files
        are 0600.
        """
        old = os.umask(0)
        try:
            journal = open_inline(self.directory)
        finally:
            os.umask(old)
        self.addCleanup(journal.close)
        self.assertEqual(mode(self.directory), 0o700)
        self.assertEqual(mode(os.path.join(self.directory, JOURNAL_NAME)), 0o600)
        self.assertEqual(mode(os.path.join(self.directory, LOCK_NAME)), 0o600)

    def test_existing_loose_modes_refused_and_kept(self) -> None:
        """
        An existing directory or journal that others can access is refused
        (L{UnsafeFile}, naming the chmod that fixes it) and its mode left
        as it is: oauthd changes no permissions it did not set.
        """
        journal = open_inline(self.directory)
        self.successResultOf(journal.close())
        path = os.path.join(self.directory, JOURNAL_NAME)
        os.chmod(path, 0o644)
        with self.assertRaises(UnsafeFile) as caught:
            open_inline(self.directory)
        self.assertIn(f"(chmod 600 {path})", str(caught.exception))
        self.assertEqual(mode(path), 0o644)
        os.chmod(path, 0o600)
        os.chmod(self.directory, 0o750)
        with self.assertRaises(UnsafeFile) as caught:
            open_inline(self.directory)
        self.assertIn(f"(chmod 700 {self.directory})", str(caught.exception))
        self.assertEqual(mode(self.directory), 0o750)

    def test_stale_temporary_file_removed(self) -> None:
        """
        A temporary file left by a crash during compaction is removed at
        open and does not affect the journal.
        """
        journal = open_inline(self.directory)
        self.successResultOf(journal.append([b"kept"]))
        self.successResultOf(journal.close())
        with open(os.path.join(self.directory, TEMP_NAME), "wb") as f:
            f.write(b"half a compaction")
        self.assertEqual(read_journal(self.directory), [b"kept"])
        self.assertFalse(temp_exists(self.directory))


class ProcessExitTests(SynchronousTestCase):
    """
    The journal's own writer thread never keeps a process alive.
    """

    def test_exit_without_close(self) -> None:
        """
        A process that opened a journal (and even started a write) and then
        exits without close(), as when start-up fails after the journal
        opened, exits at once instead of waiting for the writer thread.
        """
        directory = make_directory(self.addCleanup)
        script = (
            "import sys, threading\n"
            "from twisted.internet import reactor\n"
            "from oauthd.eventlog import FileJournal\n"
            f"journal = FileJournal.open({directory!r}, reactor)\n"
            "journal.append([b'never acknowledged'])\n"
            "assert any(t.name.startswith('PoolThread-oauthd-journal')"
            " for t in threading.enumerate())\n"
            "sys.exit(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 3, result.stderr)
