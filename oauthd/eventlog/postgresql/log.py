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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from attrs import define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock, LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog.errors import (
    CompactionInProgress, JournalClosed, JournalError, LogDiverged, LogGap, LogUnavailable)
from oauthd.eventlog.format import HEADER_SIZE, RECORD_OVERHEAD, check_payload
from oauthd.eventlog.postgresql.compaction import Compacted, Compaction
from oauthd.eventlog.postgresql.connection import redact
from oauthd.eventlog.postgresql.database import Appending, Fetched, Listener, Reader, Writer
from oauthd.eventlog.postgresql.failures import FailureShare
from oauthd.eventlog.postgresql.sealing import KeyMismatch
from oauthd.eventlog.postgresql.snapshots import Snapshotter
from oauthd.eventlog.writer_pool import WriterPool
from oauthd.interfaces import Claim, Deliver, IEventLog, IFollowedLog

__all__ = ["PostgresLog"]

_log = Logger()

PAGE = 10_000  # records one read of the log fetches at most



@define(eq=False)
class _Entry:
    appending: Appending
    done: Deferred[None]


@implementer(IEventLog, IFollowedLog)
@define(eq=False)
class PostgresLog:
    """
    The event log shared by several nodes, in PostgreSQL.  Build it with
    L{oauthd.eventlog.postgresql.opening.open_log}.
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
    snapshot_records: int = 0
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
    _compaction: Compaction | None = None
    _retention: float = 0.0
    _clock: IReactorTime = field(factory=Clock)
    _sweeper: LoopingCall | None = None
    _read_ok: bool = True
    # Called when compaction passed this node (the daemon exits for its
    # service manager to start it again, from the latest snapshot).
    on_gap: Callable[[LogGap], object] | None = None
    # Told, in seconds, how long after a notification its records were
    # delivered here (the follow latency the metrics show).
    on_follow: Callable[[float], object] | None = None
    # Told (rule, key digest, count) of the rate-limit failures other nodes charged.
    on_failures: Callable[[str, str, int], object] | None = None
    _failures: FailureShare | None = None
    _notified_at: float | None = None
    _last_contact: float = 0.0
    _failure: JournalError | None = None
    # Set when the writer's connection broke; appends fail at once (memory
    # stays unchanged) until a probe reconnects.
    _unavailable: LogUnavailable | None = None
    _closing: bool = False
    _closed: bool = False
    _close_waiters: list[Deferred[None]] = field(factory=list)

    def start(self, poll: float | None, sweep_every: float | None) -> None:
        """
        Start the listener thread, whose wake-ups make the node read the log
        (and every C{poll} seconds without one), unless C{poll} is C{None};
        and sweeping expired claims every C{sweep_every} seconds, if given.
        """
        if sweep_every is not None:
            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self._clock
            self._sweeper.start(sweep_every, now=False)
        if poll is not None:
            reactor = self._reactor
            self._listener = Listener(self.uri, f"oauthd {self.node} listener",
                                      lambda: reactor.callFromThread(self._notified), poll,
                                      lambda payload: reactor.callFromThread(self._failed_elsewhere, payload))
            self._listener.start()

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

    def _sweep(self) -> None:
        if self._closing:
            return
        self.sweep_claims(self._clock.seconds()).addErrback(
            lambda failure: _log.warn("event log: sweeping expired claims failed: {why}",
                                      why=failure.getErrorMessage()))

    @property
    def last_contact(self) -> float | None:
        """
        When (the clock's seconds) this node last read the log up to its
        head of the time; C{None} while nothing follows the log.
        """
        return None if self._deliver is None else self._last_contact

    def lag(self) -> float | None:
        """
        See L{IFollowedLog.lag}.
        """
        contact = self.last_contact
        return None if contact is None else max(self._clock.seconds() - contact, 0.0)

    @property
    def failure(self) -> str | None:
        """
        Why this node stopped following the log for good (it diverged, or
        compaction passed it), or C{None}.
        """
        return None if self._failure is None else str(self._failure)

    @property
    def reachable(self) -> bool:
        """
        Whether the last attempt to write to the log reached it.
        """
        return self._unavailable is None and self._read_ok

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
        compaction = Compaction(iter(snapshot), self.position, self._pools["snapshot"], self._snapshotter,
                                self._retention)
        self._compaction = compaction
        self._loaded = None
        return compaction.run().addBoth(self._compacted, compaction)

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
            if self._sweeper is not None and self._sweeper.running:
                self._sweeper.stop()
            if self._failures is not None:
                self._failures.stop()
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
        if self._compaction is not None:
            self._compaction.count(position, size)

    # -- following ---------------------------------------------------------------

    def _wait_for(self, position: int, done: Deferred[None]) -> None:
        if position <= self._cursor:
            done.callback(None)
        else:
            bisect.insort(self._waiting, (position, next(self._sequence), done))

    def share_failure(self, rule: str, digest: str) -> None:
        """
        Have the other nodes charge a rate-limit failure charged here
        (gathered, L{oauthd.eventlog.postgresql.failures}).
        """
        if not self._closing:
            self._share().add(rule, digest)

    def _share(self) -> FailureShare:
        if self._failures is None:
            def send(payload: str) -> None:
                if not self._closing:
                    self._pools["writer"].run(self._writer.notify_failures, payload)
            self._failures = FailureShare(self.node, self._clock, send)
        return self._failures

    def _failed_elsewhere(self, payload: str) -> None:
        if self.on_failures is not None:
            for rule, digest, count in self._share().read(payload):
                self.on_failures(rule, digest, count)

    def _notified(self) -> None:
        if self._notified_at is None:
            self._notified_at = self._clock.seconds()
        self._wake()

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
            if self._notified_at is not None and self.on_follow is not None:
                self.on_follow(self._clock.seconds() - self._notified_at)
        if not fetched.full:
            self._notified_at = None
        if not fetched.full:
            self._last_contact = self._clock.seconds()
        self._read_ok = True
        if self._unavailable is not None:
            # The database is back: the writer reconnects before an append
            # has to fail to find out.
            self._probe()
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
        self._read_ok = False
        if isinstance(error, (LogDiverged, LogGap, KeyMismatch)):
            self._failure = error
            _log.critical("{error}", error=error)
            asking = asking + self._asking
            self._asking = []
            if isinstance(error, LogGap) and self.on_gap is not None:
                self.on_gap(error)
        elif not isinstance(error, LogUnavailable):
            _log.failure("event log: reading failed", failure)
            error = LogUnavailable(f"reading the event log failed: {failure.getErrorMessage()}")
        # Appends committed but not read back: their outcome is unknown here
        # until the log is back (a 503 now, not a request held meanwhile).
        waiting, self._waiting = [w[2] for w in self._waiting], []
        asking = asking + waiting
        for done in asking:
            done.errback(error)
        self._maybe_closed()

    # -- compaction ------------------------------------------------------------

    def _compacted(self, result: Compacted | Failure, compaction: Compaction) -> None:
        self._compaction = None
        self._maybe_closed()
        if isinstance(result, Failure):
            result.raiseException()
        if result.written:
            self._records, self._bytes = result.records, HEADER_SIZE + result.size
        elif self._records:
            # Another node's snapshot: sizes scaled by what it left.
            self._bytes = HEADER_SIZE + (self._bytes - HEADER_SIZE) * result.records // self._records
            self._records = result.records

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
