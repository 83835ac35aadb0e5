# -*- test-case-name: tests.test_eventlog_contract -*-
"""
L{PostgresLog}: the reactor side of the shared log in PostgreSQL.

All its methods are called on the reactor thread, which alone decides the
order of work, as in the file journal.  The blocking work runs on one-thread
pools (L{WriterPool}), each with a connection of its own: the writer
(appends, grouped while one is in flight: group commit), the reader (reads
after the cursor, heads for L{sync}), the snapshotter (compactions); the
L{Listener} thread wakes the reader when a writer anywhere has committed.
"""

from __future__ import annotations

import bisect
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from attrs import define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from oauthd.eventlog.errors import (
    CompactionInProgress, JournalClosed, JournalError, LogDiverged, LogUnavailable)
from oauthd.eventlog.format import HEADER_SIZE, RECORD_OVERHEAD, check_payload
from oauthd.eventlog.postgresql.connection import redact
from oauthd.eventlog.postgresql.database import Appending, Fetched, Listener, Reader, Snapshotter, Writer
from oauthd.eventlog.postgresql.schema import ensure_schema
from oauthd.eventlog.writer_pool import WriterPool
from oauthd.interfaces import Claim, Deliver, IEventLog

__all__ = ["PostgresLog"]

_log = Logger()

PAGE = 10_000  # records one read of the log fetches at most

_SLICE_RECORDS = 4096
_SLICE_BYTES = 1 << 20
_SLICE_SECONDS = 0.002


@define(eq=False)
class _Entry:
    appending: Appending
    done: Deferred[None]


@define(eq=False)
class _Compaction:
    snapshot: Iterator[bytes]
    position: int
    done: Deferred[None]
    id: int = 0
    seq: int = 0
    records: int = 0
    bytes: int = 0
    # What was counted after the snapshot's position while it was written.
    tail_records: int = 0
    tail_bytes: int = 0


@implementer(IEventLog)
@define(eq=False)
class PostgresLog:
    """
    The event log shared by several nodes, in PostgreSQL.  Build it with
    L{PostgresLog.open}.
    """

    uri: str
    node: str
    _reactor: IReactorFromThreads
    _writer: Writer
    _reader: Reader
    _snapshotter: Snapshotter
    _pools: dict[str, WriterPool]
    _loaded: list[bytes] | None
    _cursor: int
    _cursor_hash: bytes
    _records: int
    _bytes: int
    _listener: Listener | None = None
    _acked: int = 0
    _deliver: Deliver | None = None
    _pending: list[_Entry] = field(factory=list)
    _writing: bool = False
    _reading: bool = False
    _read_again: bool = False
    _asking: list[Deferred[None]] = field(factory=list)
    # (position, sequence, Deferred): fired once the cursor reaches position.
    _waiting: list[tuple[int, int, Deferred[None]]] = field(factory=list)
    _sequence: Iterator[int] = field(factory=itertools.count)
    _compaction: _Compaction | None = None
    _failure: JournalError | None = None
    # Set when the writer's connection broke; appends fail at once (memory
    # stays unchanged) until a probe reconnects.
    _unavailable: LogUnavailable | None = None
    _closing: bool = False
    _closed: bool = False
    _close_waiters: list[Deferred[None]] = field(factory=list)

    @classmethod
    def open(
        cls,
        uri: str,
        reactor: IReactorFromThreads,
        *,
        node: str | None = None,
        pool: ThreadPool | None = None,
        listen: bool = True,
        poll: float = 1.0,
        page: int = PAGE,
        partition_size: int | None = None,
        touch_every: float = 1.0,
    ) -> PostgresLog:
        """
        Open the shared log at C{uri}: create or upgrade its schema, read
        the latest snapshot and the log after it (blocking: call it before
        the reactor runs).

        @param node: this node's id (by default a new one).
        @param pool: runs every blocking job instead of the log's own
            threads (tests pass one that runs jobs inline).
        @param listen: whether to start the listener thread (without it,
            the log is read after its own appends and on L{sync} only).
        @param poll: the listener's wait, in seconds, before it wakes the
            reader anyway.
        @param partition_size: positions per partition of a new log.
        @param touch_every: seconds between updates of this node's row (its
            applied position) in the nodes table.
        @raise LogUnavailable: the database cannot be reached.
        @raise SchemaTooNew: its schema is newer than this oauthd knows.
        @raise LogDiverged: the log's hash chain is broken.
        """
        node = node or uuid.uuid4().hex
        writer = Writer.to(uri, f"oauthd {node} writer")
        ensure_schema(writer.connection(), partition_size)
        reader = Reader.to(uri, f"oauthd {node} reader", node, page, touch_every)
        loaded = reader.load()
        size = HEADER_SIZE + sum(RECORD_OVERHEAD + len(p) for p in loaded.payloads)
        pools = {role: WriterPool(reactor, f"oauthd-pg-{role}", pool) for role in ("writer", "reader", "snapshot")}
        for writer_pool in pools.values():
            writer_pool.start()
        log = cls(
            uri=uri, node=node, reactor=reactor, writer=writer, reader=reader,
            snapshotter=Snapshotter.to(uri, f"oauthd {node} snapshot", node), pools=pools,
            loaded=loaded.payloads, cursor=loaded.position, cursor_hash=loaded.last_hash,
            records=len(loaded.payloads), bytes=size,
        )
        log._acked = loaded.position
        _log.info("event log: {uri} at position {position}, node {node}",
                  uri=redact(uri), position=loaded.position, node=node)
        if listen:
            log._listener = Listener(uri, f"oauthd {node} listener",
                                     lambda: reactor.callFromThread(log._wake), poll)
            log._listener.start()
        return log

    # -- IEventLog -------------------------------------------------------------

    @property
    def record_count(self) -> int:
        """
        See L{IEventLog.record_count}: what a node starting now would read
        (the latest snapshot's records and the log after it).
        """
        return self._records

    @property
    def byte_count(self) -> int:
        """
        See L{IEventLog.byte_count}, counted as the file format would.
        """
        return self._bytes

    @property
    def position(self) -> int:
        """
        See L{IEventLog.position}; without a follower, the last position
        this node's appends took.
        """
        return self._cursor if self._deliver is not None else max(self._cursor, self._acked)

    def append(self, payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        """
        See L{IEventLog.append}.  With a follower, it fires once its records
        have been delivered; it fails with L{LogUnavailable} if the database
        could not be reached (the records may have been committed all the
        same if the connection broke during the commit).
        """
        batch = tuple(check_payload(p) for p in payloads)
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        unavailable = self._unavailable
        if unavailable is not None:
            self._probe()
            return fail(unavailable)
        done: Deferred[None] = Deferred()
        self._pending.append(_Entry(Appending(batch, tuple(claims)), done))
        self._write()
        return done

    def follow(self, deliver: Deliver) -> None:
        """
        See L{IEventLog.follow}.
        """
        if self._deliver is not None:
            raise RuntimeError("this log has a follower already")
        self._deliver = deliver
        self._wake()

    def sync(self) -> Deferred[None]:
        """
        See L{IEventLog.sync}: asks PostgreSQL for the head, then reads
        until the cursor reaches it.  Calls while a read runs share the
        next one.
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if self._deliver is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._asking.append(done)
        self._wake()
        return done

    def sweep_claims(self, before: float) -> Deferred[int]:
        """
        See L{IEventLog.sweep_claims}.
        """
        return self._pools["snapshot"].run(self._snapshotter.sweep_claims, before)

    def replay(self) -> Iterator[bytes]:
        """
        See L{IEventLog.replay}: the latest snapshot's payloads, then the
        log's after it, as read at open; given once.
        """
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            raise RuntimeError("replay() gives the records read at open, once")
        return iter(loaded)

    def compact(self, snapshot: Iterable[bytes]) -> Deferred[None]:
        """
        See L{IEventLog.compact}: writes C{snapshot} as the state at this
        node's position (every record acknowledged or delivered here), for
        nodes that start later.  The log itself keeps every record (phase 2
        drops old partitions).
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if self._compaction is not None:
            return fail(CompactionInProgress("the event log is already compacting"))
        compaction = _Compaction(iter(snapshot), self.position, Deferred())
        self._compaction = compaction
        self._loaded = None
        began = self._pools["snapshot"].run(self._snapshotter.begin, compaction.position)
        began.addCallbacks(self._snapshot_began, self._snapshot_failed,
                           callbackArgs=(compaction,), errbackArgs=(compaction,))
        return compaction.done

    def close(self) -> Deferred[None]:
        """
        See L{IEventLog.close}.
        """
        if self._closed:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._close_waiters.append(done)
        if not self._closing:
            self._closing = True
            if self._listener is not None:
                self._listener.stop()
            self._maybe_closed()
        return done

    # -- appending ---------------------------------------------------------------

    def _refusal(self) -> Deferred[Any] | None:
        if self._closing:
            return fail(JournalClosed(f"the event log at {redact(self.uri)} is closed"))
        if self._failure is not None:
            return fail(self._failure)
        return None

    def _write(self) -> None:
        if self._writing or not self._pending:
            return
        entries, self._pending = self._pending, []
        self._writing = True
        self._pools["writer"].run(self._writer.append, [e.appending for e in entries]).addBoth(
            self._written, entries)

    def _probe(self) -> None:
        if not self._writing:
            self._writing = True
            self._pools["writer"].run(self._writer.probe).addBoth(self._probed)

    def _probed(self, result: object) -> None:
        self._writing = False
        if not isinstance(result, Failure):
            self._unavailable = None
        self._write()
        self._maybe_closed()

    def _written(self, outcomes: object, entries: list[_Entry]) -> None:
        self._writing = False
        if isinstance(outcomes, Failure):
            error = LogUnavailable(f"the event log's writer failed: {outcomes.getErrorMessage()}")
            outcomes = [error] * len(entries)
        assert isinstance(outcomes, list)
        if outcomes and isinstance(outcomes[0], LogUnavailable):
            self._unavailable = outcomes[0]
        appended = False
        for entry, outcome in zip(entries, outcomes):
            if isinstance(outcome, Exception):
                entry.done.errback(outcome)
                continue
            first = outcome - len(entry.appending.payloads) + 1
            self._acked = max(self._acked, outcome)
            appended = appended or bool(entry.appending.payloads)
            if self._deliver is None:
                for offset, payload in enumerate(entry.appending.payloads):
                    self._count(first + offset, payload)
                entry.done.callback(None)
            else:
                self._wait_for(outcome, entry.done)
        if appended:
            self._wake()
        self._write()
        self._maybe_closed()

    def _count(self, position: int, payload: bytes) -> None:
        size = RECORD_OVERHEAD + len(payload)
        self._records += 1
        self._bytes += size
        compaction = self._compaction
        if compaction is not None and position > compaction.position:
            compaction.tail_records += 1
            compaction.tail_bytes += size

    # -- following ---------------------------------------------------------------

    def _wait_for(self, position: int, done: Deferred[None]) -> None:
        if position <= self._cursor:
            done.callback(None)
        else:
            bisect.insort(self._waiting, (position, next(self._sequence), done))

    def _wake(self) -> None:
        if self._deliver is None or self._closing or self._failure is not None:
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self._read_again = False
        asking, self._asking = self._asking, []
        read = self._pools["reader"].run(self._reader.fetch, self._cursor, self._cursor_hash, bool(asking))
        read.addBoth(self._fetched, asking)

    def _fetched(self, fetched: object, asking: list[Deferred[None]]) -> None:
        if isinstance(fetched, Failure):
            self._reading = False
            self._read_failed(fetched, asking)
            return
        assert isinstance(fetched, Fetched) and self._deliver is not None
        for position, payload in fetched.records:
            self._cursor = position
            self._count(position, payload)
            try:
                self._deliver(position, payload)
            except Exception:
                _log.failure("event log: the follower failed on the record at {position}", position=position)
        if fetched.records:
            self._cursor_hash = fetched.last_hash
        for done in asking:
            self._wait_for(fetched.head or 0, done)
        while self._waiting and self._waiting[0][0] <= self._cursor:
            self._waiting.pop(0)[2].callback(None)
        self._reading = False
        if fetched.full or self._read_again or self._asking:
            self._wake()
        self._maybe_closed()

    def _read_failed(self, failure: Failure, asking: list[Deferred[None]]) -> None:
        error = failure.value
        if isinstance(error, LogDiverged):
            self._failure = error
            _log.critical("{error}", error=error)
            waiting, self._waiting = [w[2] for w in self._waiting], []
            asking = asking + waiting + self._asking
            self._asking = []
        elif not isinstance(error, LogUnavailable):
            _log.failure("event log: reading failed", failure)
            error = LogUnavailable(f"reading the event log failed: {failure.getErrorMessage()}")
        for done in asking:
            done.errback(error)
        self._maybe_closed()

    # -- compaction ------------------------------------------------------------

    def _snapshot_began(self, snapshot_id: int, compaction: _Compaction) -> None:
        compaction.id = snapshot_id
        self._next_chunk(None, compaction)

    def _next_chunk(self, _: object, compaction: _Compaction) -> None:
        chunk: list[bytes] = []
        size = 0
        deadline = time.perf_counter() + _SLICE_SECONDS
        try:
            for payload in compaction.snapshot:
                chunk.append(check_payload(payload))
                size += RECORD_OVERHEAD + len(payload)
                if len(chunk) >= _SLICE_RECORDS or size >= _SLICE_BYTES or time.perf_counter() >= deadline:
                    break
        except Exception:
            self._snapshot_failed(Failure(), compaction)
            return
        pool = self._pools["snapshot"]
        if chunk:
            compaction.seq += 1
            compaction.records += len(chunk)
            compaction.bytes += size
            written = pool.run(self._snapshotter.chunk, compaction.id, compaction.seq, chunk)
            written.addCallbacks(self._next_chunk, self._snapshot_failed,
                                 callbackArgs=(compaction,), errbackArgs=(compaction,))
        else:
            finished = pool.run(self._snapshotter.finish, compaction.id, compaction.records)
            finished.addCallbacks(self._snapshot_finished, self._snapshot_failed,
                                  callbackArgs=(compaction,), errbackArgs=(compaction,))

    def _snapshot_finished(self, _: object, compaction: _Compaction) -> None:
        self._compaction = None
        self._records = compaction.records + compaction.tail_records
        self._bytes = HEADER_SIZE + compaction.bytes + compaction.tail_bytes
        _log.info("event log: snapshot of {records} records at position {position}",
                  records=compaction.records, position=compaction.position)
        compaction.done.callback(None)
        self._maybe_closed()

    def _snapshot_failed(self, failure: Failure, compaction: _Compaction) -> None:
        _log.failure("event log: the snapshot failed; the log is unchanged", failure)

        def abandoned(_: object) -> None:
            self._compaction = None
            compaction.done.errback(failure)
            self._maybe_closed()

        if compaction.id:
            self._pools["snapshot"].run(self._snapshotter.abort, compaction.id).addBoth(abandoned)
        else:
            abandoned(None)

    # -- closing -----------------------------------------------------------------

    def _maybe_closed(self) -> None:
        if (
            not self._closing or self._writing or self._pending or self._reading
            or self._compaction is not None or self._closed
        ):
            return
        self._closed = True
        # What is committed stays committed: its appends succeed.
        for _, _, done in self._waiting:
            done.callback(None)
        asking, self._asking, self._waiting = self._asking, [], []
        for done in asking:
            done.errback(JournalClosed("the event log was closed"))
        jobs = [("writer", self._writer.close), ("reader", self._reader.close),
                ("snapshot", self._snapshotter.close)]

        def next_job(_: object) -> None:
            if jobs:
                role, job = jobs.pop(0)
                self._pools[role].run(job).addBoth(next_job)
                return
            for pool in self._pools.values():
                pool.stop()
            waiters, self._close_waiters = self._close_waiters, []
            for waiter in waiters:
                waiter.callback(None)

        next_job(None)
