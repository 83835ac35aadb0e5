# -*- test-case-name: tests.test_journal -*-
"""
L{FileJournal}: the event log as one append-only file in the data
directory, with group commit.

The state layer encodes each change as an opaque C{bytes} payload and hands
it to an L{IEventLog}.  L{IEventLog.append} fires its L{Deferred} only when
the payloads are on disk (written and fsync'd); L{IEventLog.replay} gives the
payloads back at start-up; L{IEventLog.compact} rewrites the log as a
snapshot of live state.

Threads
=======

L{FileJournal} methods are called on the reactor thread.  Every write,
fsync, rename and close runs on one writer thread (a L{WriterPool}: the
journal's own, or a pool tests inject), doing the jobs of L{JournalFile};
results come back on the reactor thread (see L{WriterPool}).  At most one
writer job is in flight at a time, so this module, on the reactor side,
alone decides the order of work.  Group commit: while a write+fsync runs,
newly arriving appends queue; when it completes, everything queued goes
into the next single write+fsync.  The reactor thread never calls fsync.
Opening, replaying and L{oauthd.eventlog.repair} do blocking I/O; they run
before the reactor starts (or offline).  The file format, and how damage is
told from a torn tail: L{oauthd.eventlog.format}.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from attrs import Factory, define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from oauthd.eventlog.errors import CompactionInProgress, JournalClosed, JournalFailed
from oauthd.eventlog.format import HEADER_SIZE, RECORD_OVERHEAD, check_payload, record_bytes
from oauthd.eventlog.journal_file import CompactionAborted, JournalFile
from oauthd.eventlog.local import LocalLog, SingleWriter
from oauthd.eventlog.writer_pool import WriterPool
from oauthd.interfaces import Claim, IEventLog

__all__ = ["FileJournal"]

# How much of a compaction snapshot one reactor turn consumes at most.  The
# wall-clock budget bounds how long the reactor is held; it has no effect on
# what is written, so it is measured with perf_counter, not the clock.
SLICE_RECORDS = 4096
_SLICE_BYTES = 1 << 20
_SLICE_SECONDS = 0.002

_log = Logger()
_END = object()


@define(eq=False)
class _Entry:
    """One append() call waiting for its write+fsync; its records are delivered just before it fires."""

    payloads: tuple[bytes, ...]
    done: Deferred[None]


@define(eq=False)
class _Compaction:
    """
    A compaction in progress.  Only the reactor side touches it; the new
    file itself is the writer's (L{JournalFile}).
    """

    snapshot: Iterator[bytes]
    done: Deferred[None]
    # Payloads that go after the snapshot: those not yet acknowledged when
    # compact() was called, then every later append.
    tail: list[bytes]
    tail_bytes: int
    snapshot_records: int = 0
    snapshot_bytes: int = 0
    chunk: list[bytes] | None = None
    exhausted: bool = False
    # Set once the final write is submitted: later appends go to the new
    # file the ordinary way, not into the tail.
    sealed: bool = False
    abort: Exception | None = None


@implementer(IEventLog)
@define(eq=False)
class FileJournal(SingleWriter):
    """
    The journal as one append-only file in a data directory.

    Build it with L{FileJournal.open}.  See the module docstring for the
    threading model, L{oauthd.eventlog.format} for the file format and
    crash recovery.
    """

    _file: JournalFile
    _records: int
    # The payloads verified at open, until replay() hands them over.
    _loaded: list[bytes] | None
    _size: int
    # Runs the journal's jobs (the audit trail's writer is its partner).
    writer: WriterPool
    _group_commit: bool
    _slice_records: int
    _pending: list[_Entry] = field(factory=list)
    # The appends the writer's current job makes durable; kept until all of
    # their Deferreds have fired, so compact() can carry the unacknowledged.
    _inflight: Sequence[_Entry] = ()
    _busy: bool = False
    _kicking: bool = False
    _rekick: bool = False
    _last_was_chunk: bool = False
    _compaction: _Compaction | None = None
    _failure: JournalFailed | None = None
    _closing: bool = False
    _closed: bool = False
    _close_waiters: list[Deferred[None]] = field(factory=list)
    _local: LocalLog = field(default=Factory(lambda self: LocalLog(self._records), takes_self=True))
    # Told the records of each group commit once durable (metrics).
    on_batch: Callable[[int], None] | None = None

    @classmethod
    def open(
        cls,
        directory: str,
        reactor: IReactorFromThreads,
        *,
        pool: ThreadPool | None = None,
        fsync: bool = True,
        fsync_function: Callable[[int], None] = os.fsync,
        group_commit: bool = True,
        slice_records: int = SLICE_RECORDS,
    ) -> FileJournal:
        """
        Open (creating if need be) the journal in C{directory}.

        Blocking: call it before the reactor runs.  Creates C{directory}
        (mode 0700, whatever the umask), takes its lock, removes a temporary
        file a crash left behind, verifies every record and cuts off a torn
        tail (logging a warning with the number of bytes dropped).

        @param reactor: The reactor whose thread calls this journal; the
            writer's results come back on its thread (L{WriterPool}).
        @param pool: Runs the writer's jobs (anything with L{ThreadPool}'s
            C{callInThreadWithCallback}; one job is given at a time).  By
            default the journal starts its own L{WriterPool} (one daemon
            thread) and stops it in L{close}.  Tests pass a pool that runs
            jobs inline.
        @param fsync: C{False} skips every fsync (benchmarks and tests only:
            nothing is durable then).
        @param fsync_function: What fsyncs a descriptor (tests inject one
            that blocks or fails).
        @param group_commit: C{False} gives every append() call its own
            write+fsync (for benchmarks).
        @param slice_records: the most snapshot records a compaction takes
            per reactor turn (tests make it small).

        @raise JournalLocked: another process holds the directory's lock.
        @raise JournalCorrupt: the header is bad, or damage is followed by
            verifiable records (run L{repair}).
        """
        journal_file, loaded, size = JournalFile.open(
            directory, fsync_function if fsync else None
        )
        writer = WriterPool(reactor, "oauthd-journal", pool)
        writer.start()
        return cls(
            file=journal_file,
            records=len(loaded),
            loaded=loaded,
            size=size,
            writer=writer,
            group_commit=group_commit,
            slice_records=slice_records,
        )

    @property
    def path(self) -> str:
        """
        The journal file's path.
        """
        return self._file.path

    @property
    def record_count(self) -> int:
        """
        See L{IEventLog.record_count}.
        """
        return self._records

    @property
    def byte_count(self) -> int:
        """
        See L{IEventLog.byte_count}; for this journal it is the file's size.
        """
        return self._size

    # -- IEventLog -----------------------------------------------------------

    def append(self, payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        """
        See L{IEventLog.append}; claims: L{oauthd.eventlog.local}.
        """
        batch = tuple([check_payload(p) for p in payloads])
        if self._closing:
            return fail(JournalClosed(f"journal {self.path} is closed"))
        if self._failure is not None:
            return fail(self._failure)
        if claims and (conflict := self._claim(claims)) is not None:
            return fail(conflict)
        if not batch and not self._busy and not self._pending:
            return succeed(None)
        self._pending.append(entry := _Entry(batch, Deferred()))
        compaction = self._compaction
        if compaction is not None and not compaction.sealed:
            compaction.tail += batch
            compaction.tail_bytes += record_bytes(batch)
        self._kick()
        return entry.done

    def replay(self) -> Iterator[bytes]:
        """
        See L{IEventLog.replay}: the payloads verified at open, given once.

        @raise RuntimeError: they were given already, or the journal has been
            compacted or closed since it was opened.
        """
        loaded = self._loaded
        if loaded is None or self._closing:
            raise RuntimeError(
                "replay() gives the records present at open, once; it is not"
                " available again, nor after a compaction or close()"
            )
        self._loaded = None
        # Each payload let go of once given: those the state drops are freed early.
        handed: list[object] = [_END, *reversed(loaded)]
        return iter(handed.pop, _END)  # type: ignore[arg-type]

    def compact(self, snapshot: Iterable[bytes]) -> Deferred[None]:
        """
        See L{IEventLog.compact}.
        """
        if self._closing:
            return fail(JournalClosed(f"journal {self.path} is closed"))
        if self._failure is not None:
            return fail(self._failure)
        if self._compaction is not None:
            return fail(
                CompactionInProgress(f"journal {self.path} is already compacting")
            )
        tail: list[bytes] = []
        for entry in [*self._inflight, *self._pending]:
            if not entry.done.called:
                tail += entry.payloads
        compaction = _Compaction(
            snapshot=iter(snapshot),
            done=Deferred(),
            tail=tail,
            tail_bytes=record_bytes(tail),
        )
        self._compaction = compaction
        self._loaded = None
        self._produce(compaction)
        self._kick()
        return compaction.done

    def close(self) -> Deferred[None]:
        """
        See L{IEventLog.close}.
        """
        if self._closed:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._close_waiters.append(done)
        self._closing = True
        self._kick()
        return done

    # -- the reactor side of the writer ---------------------------------------

    def _kick(self) -> None:
        """
        Give the writer its next job if it is idle.  Re-entrant calls (from
        a job that completed synchronously) are folded into the outer loop,
        so an inline pool does not recurse once per job.
        """
        if self._kicking:
            self._rekick = True
            return
        self._kicking = True
        try:
            self._rekick = True
            while self._rekick:
                self._rekick = False
                self._start_next_job()
        finally:
            self._kicking = False

    def _submit(self, job: Callable[..., object], *args: object) -> Deferred[Any]:
        self._busy = True
        return self.writer.run(job, *args)

    def _job_finished(self) -> None:
        self._busy = False
        self._inflight = ()
        self._kick()

    def _start_next_job(self) -> None:
        if self._busy or self._closed:
            return
        compaction = self._compaction
        if self._failure is None:
            if compaction is not None and compaction.abort is not None:
                self._submit(self._file.discard_new).addBoth(
                    self._compaction_abandoned, compaction
                )
                return
            if compaction is not None and compaction.exhausted and compaction.chunk is None:
                # Every pending append is in the tail: the final write makes
                # it durable in the new file, so it fires with the compaction.
                entries, self._pending = self._pending, []
                self._inflight = entries
                compaction.sealed = True
                self._submit(self._file.replace_with_new, compaction.tail).addBoth(
                    self._compaction_finished, compaction, entries
                )
                return
            chunk_ready = compaction is not None and compaction.chunk is not None
            if self._pending and (not chunk_ready or self._last_was_chunk):
                self._last_was_chunk = False
                if self._group_commit:
                    entries, self._pending = self._pending, []
                else:
                    entries, self._pending = self._pending[:1], self._pending[1:]
                payloads = [p for e in entries for p in e.payloads]
                self._inflight = entries
                self._busy = True
                done = partial(self._batch_written, entries, len(payloads), record_bytes(payloads))
                self.writer.run_then(done, self._file.append, payloads)
                return
            if compaction is not None and compaction.chunk is not None:
                self._last_was_chunk = True
                self._submit(self._file.write_snapshot, compaction.chunk).addBoth(
                    self._chunk_written, compaction
                )
                return
        if self._closing and not self._pending and self._compaction is None:
            self._submit(self._file.close).addBoth(self._files_closed)

    def _batch_written(self, entries: list[_Entry], records: int, size: int, succeeded: bool, result: Any) -> None:
        try:
            if not succeeded:
                self._enter_failed(result, entries)
            else:
                self._records, self._size = self._records + records, self._size + size
                if self.on_batch is not None:
                    self.on_batch(records)
                for entry in entries:
                    self._local.acknowledge(entry.payloads, entry.done)
        finally:
            self._job_finished()

    def _produce(self, compaction: _Compaction) -> None:
        """
        Consume the next slice of the snapshot, on the reactor thread.
        """
        chunk: list[bytes] = []
        size = 0
        deadline = time.perf_counter() + _SLICE_SECONDS
        try:
            for payload in compaction.snapshot:
                chunk.append(check_payload(payload))
                size += RECORD_OVERHEAD + len(payload)
                if (
                    len(chunk) >= self._slice_records
                    or size >= _SLICE_BYTES
                    or time.perf_counter() >= deadline
                ):
                    break
            else:
                compaction.exhausted = True
        except Exception as e:
            _log.failure(
                "Journal {path}: compaction abandoned, the snapshot could not"
                " be read; the current file stays in use",
                level=LogLevel.error,
                path=self.path,
            )
            compaction.abort = e
            return
        compaction.snapshot_records += len(chunk)
        compaction.snapshot_bytes += size
        compaction.chunk = chunk or None

    def _chunk_written(self, result: object, compaction: _Compaction) -> None:
        try:
            compaction.chunk = None
            if isinstance(result, Failure):
                self._compaction_failed(result, compaction, [])
            elif compaction is self._compaction and not compaction.exhausted:
                self._produce(compaction)
        finally:
            self._job_finished()

    def _compaction_finished(
        self, result: object, compaction: _Compaction, entries: list[_Entry]
    ) -> None:
        try:
            if isinstance(result, Failure):
                self._compaction_failed(result, compaction, entries)
                return
            self._compaction = None
            self._records = compaction.snapshot_records + len(compaction.tail)
            self._size = HEADER_SIZE + compaction.snapshot_bytes + compaction.tail_bytes
            _log.info(
                "Journal {path} compacted: {records} records, {size} bytes",
                path=self.path,
                records=self._records,
                size=self._size,
            )
            for entry in entries:
                self._local.acknowledge(entry.payloads, entry.done)
            compaction.done.callback(None)
        finally:
            self._job_finished()

    def _compaction_failed(
        self, failure: Failure, compaction: _Compaction, entries: list[_Entry]
    ) -> None:
        if not isinstance(failure.value, CompactionAborted):
            self._enter_failed(failure, entries)
            return
        self._compaction = None
        # Appends the final write had taken never reached the old file.
        self._pending[:0] = entries
        cause = failure.value.__cause__ or failure.value
        _log.failure(
            "Journal {path}: compaction failed ({error}); the current file"
            " stays in use",
            failure,
            level=LogLevel.error,
            path=self.path,
            error=cause,
        )
        compaction.done.errback(cause)

    def _compaction_abandoned(self, result: object, compaction: _Compaction) -> None:
        try:
            self._compaction = None
            compaction.done.errback(compaction.abort)
        finally:
            self._job_finished()

    def _enter_failed(self, failure: Failure, entries: list[_Entry]) -> None:
        error = JournalFailed(
            f"journal {self.path} is in a failed state after a write error"
            f" ({failure.getErrorMessage()}); it refuses every further append"
            " until oauthd is restarted"
        )
        error.__cause__ = failure.value
        self._failure = error
        _log.failure(
            "Journal {path}: a write or fsync failed; the journal is now in a"
            " failed state and refuses every further append until restart",
            failure,
            path=self.path,
        )
        waiting = entries + self._pending
        self._pending = []
        for entry in waiting:
            entry.done.errback(error)
        compaction, self._compaction = self._compaction, None
        if compaction is not None:
            # Its new file, if begun, is removed when the journal closes.
            compaction.done.errback(error)

    def _files_closed(self, result: object) -> None:
        self._busy = False
        self._closed = True
        if isinstance(result, Failure):
            _log.failure(
                "Journal {path}: error while closing", result, path=self.path
            )
        self.writer.stop()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
