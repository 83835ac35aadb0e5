"""
Audit events: every issue, refusal, revocation and admin change.

An event names tokens only by handle, never by value, and carries no secret;
user-supplied text is cleaned of control characters and cut short so a
hostile value cannot forge or flood log lines.

Events go to an audit sink. The daemon's is L{AuditTrail}, a hash-chained
file in the data directory; without one (tests, tools) they are structured
log events in the C{oauthd.audit} namespace (L{log_audit}).

The audit trail
===============

C{audit.log} (mode 0600) holds one JSON object per line, its members in this
order: C{seq} (1, 2, ...), C{time} (POSIX seconds), C{event}, C{outcome},
then the event's fields in sorted order, and last C{chain}::

    {"seq":7,"time":1800000000,"event":"token.issue","outcome":"ok",
     "client":"c...","ip":"127.0.0.1","token":"sess...","chain":"9f2c..."}

C{chain} is the SHA-256 hex digest of the previous line's C{chain} (64
zeros before the first line), a newline, and this line's text up to the
comma before C{"chain"} followed by C{"}"}. Changing, removing or reordering
any line breaks the chain from there on (L{verify} finds where), and the
daemon logs the head of the chain when it starts and stops, so a rewrite of
the whole file after the fact disagrees with the system log.

An event that describes a change of state (L{AuditTrail.record_change}) is
written at once, together with whatever else is waiting (group commit: the
events recorded while one write runs go into the next), and its Deferred
fires once it is fdatasync'd: the committer answers only then. Other events
(refusals, listings) wait up to L{FLUSH_SECONDS} for a batch. Refusals are
summed up (L{oauthd.services.audit_summary}), and what waits in memory
while writes fail is bounded (L{TrailLimits.backlog}): beyond it, events
that change nothing are dropped and counted in an C{audit.dropped} line once
writes succeed again. Changes are refused meanwhile (see L{oauthd.state.store}).

The trail rotates by size and keeps rotated files by total size and age
(L{TrailLimits}); L{oauthd.services.audit_files} names the files, carries
the chain across them and verifies it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen
from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog.files import open_private
from oauthd.eventlog.writer_pool import WriterPool
from oauthd.interfaces import AuditedEvent, AuditFailing, IAuditSink
from oauthd.services.audit_files import (
    CONTINUE,
    GENESIS,
    TRAIL_NAME,
    Verified,
    chain_of,
    resume,
    rotate,
    rotated_files,
    rotated_name,
    seq_of,
    trail_line,
    write_lines,
    verify,
    verify_trail,
)
from oauthd.services.audit_retention import Retention
from oauthd.services.audit_summary import WINDOW, RefusalSummary

__all__ = [
    "GENESIS", "TRAIL_NAME", "AuditTrail", "TrailLimits", "Verified", "chain_of", "log_audit",
    "verify", "verify_trail",
]

audit_log = Logger(namespace="oauthd.audit")
log = Logger()

AuditSink = Callable[[str, str, dict[str, str]], None]
"""Takes an event name, its outcome and its cleaned fields."""

FLUSH_SECONDS = 0.05
"""
How long an event that changes nothing may wait in memory before its batch
is written.
"""
RETRY_SECONDS = 5.0
"""How long a batch whose write failed waits before the next try."""


@frozen
class TrailLimits:
    """
    What bounds the trail on disk and in memory.

    @ivar rotate_bytes: the size at which the active file is rotated.
    @ivar keep_bytes: the most all files together may hold; the oldest
        rotated files are removed to stay under it.
    @ivar keep_days: rotated files whose last line is older are removed.
    @ivar backlog: the most events kept in memory while writes fail.
    """

    rotate_bytes: int = 64 << 20
    keep_bytes: int = 1 << 30
    keep_days: int = 90
    backlog: int = 10_000


@implementer(IAuditSink)
class _LogAudit:
    """
    The audit sink without a trail: a structured log event.
    """

    failure: str | None = None

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        details = " ".join(f"{name}={value}" for name, value in sorted(fields.items()))
        audit_log.info(
            "audit: {audit_event} {outcome} {details}",
            audit_event=event, outcome=outcome, details=details, **fields,
        )

    def record_change(self, event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]:
        self(event, outcome, fields)
        return succeed(None)

    def record_changes(self, events: Sequence[AuditedEvent]) -> None:
        for e in events:
            self(e.event, e.outcome, e.fields)


log_audit = _LogAudit()


@implementer(IAuditSink)
class AuditTrail(Service):
    """
    The hash-chained audit files, as an audit sink (call it) and a service
    that writes what is recorded and, when stopped, the rest.

    @ivar failure: why the trail cannot write now, or C{None}.
    @ivar written_seq: the sequence number of the last line made durable.
    @ivar written_chain: that line's chain value.
    @ivar retention: removes the old rotated files (give it its C{anchor}).
    """

    failure: str | None = None

    def __init__(
        self, directory: str, clock: IReactorTime, reactor: Any, pool: Any = None,
        limits: TrailLimits = TrailLimits(), sync: Callable[[int], None] = os.fdatasync,
        partner: WriterPool | None = None,
    ) -> None:
        """
        Open (creating if need be) the trail in C{directory}. Blocking: call
        it before the reactor runs.

        @param reactor: delivers the writer's results (its L{WriterPool}'s way back).
        @param pool: runs the writes, one at a time; by default the trail
            runs them on a writer thread of its own (a L{WriterPool}),
            started with the service and stopped once the trail is closed
            (tests pass one that runs inline).
        @param sync: makes a write durable (tests pass one that fails, as a
            full disk does).
        @param partner: the writer whose results and the trail's come back
            together (the journal's: a change waits for both anyway).
        """
        self.directory = directory
        self._sync = sync
        self.path = os.path.join(directory, TRAIL_NAME)
        self._clock = clock
        self._limits = limits
        self._fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        # Lines not yet written, with their seq; a rotation comes before the
        # line whose seq is at the head of _rotations.
        self._pending: list[tuple[int, bytes]] = []
        self._rotations: deque[tuple[int, str]] = deque()
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._flush_call: Any = None
        # The batch being written (empty for a rotation), while one is.
        self._writing: list[tuple[int, bytes]] | None = None
        self._idle: list[Deferred[None]] = []
        self._writer = WriterPool(reactor, "oauthd-audit", pool, partner)
        self._closed = False
        self._dropped = 0
        self._summary = RefusalSummary(clock.seconds())
        self._housekeeping = LoopingCall(self._close_window)
        self._housekeeping.clock = clock
        self._seq, self._head = resume(self._fd, self.path, directory)
        self.written_seq = self._seq
        self.written_chain = self._head
        self._watchers: list[Deferred[None]] = []
        self.retention = Retention(directory, limits, self._writer, clock)
        self._file_bytes = os.fstat(self._fd).st_size
        self._first_seq = self._seq + 1
        if self._file_bytes:
            first = os.pread(self._fd, 65536, 0).split(b"\n", 1)[0]
            try:
                self._first_seq = seq_of(first)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                pass
        else:
            older = rotated_files(directory)
            if older:
                self._append(CONTINUE, "ok", {"file": older[-1], "previous": self._head})

    @property
    def limits(self) -> TrailLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: TrailLimits) -> None:
        # A reload: rotation, retention and the backlog read them at each use.
        self._limits = limits
        self.retention.limits = limits

    # -- recording ----------------------------------------------------------

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        if self._closed:
            # Something still running after shutdown: the system log has it.
            log_audit(event, outcome, fields)
            return
        if outcome == "denied" and not self._summary.admit(event, fields):
            return
        if self._bounded_append(event, outcome, fields):
            self._schedule(FLUSH_SECONDS)

    def record_change(self, event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]:
        """
        Record an event that describes a change: never dropped; written at
        once with whatever waits (or as soon as the write in flight is done).

        @return: fires when the event is durable; fails with L{AuditFailing}
            if the trail cannot write now (the event stays queued).
        """
        if self._closed:
            log_audit(event, outcome, fields)
            return succeed(None)
        durable = self._durable(self._append(event, outcome, fields))
        return succeed(None) if durable is None else durable

    def record_changes(self, events: Sequence[AuditedEvent]) -> Deferred[None] | None:
        """
        Record the events of one change, as L{record_change} does each;
        C{None} if they are durable already (written inline), else what
        fires once they are (failing as L{record_change}'s does).
        """
        if self._closed:
            for e in events:
                log_audit(e.event, e.outcome, e.fields)
            return None
        seq = 0
        for e in events:
            seq = self._append(e.event, e.outcome, e.fields)
        return self._durable(seq) if seq else None

    def _durable(self, seq: int) -> Deferred[None] | None:
        """
        Write line C{seq} and those before it now (or after the write in
        flight); C{None} if that made it durable, else what fires once it is.
        """
        # More than one write when a rotation comes first, if they run inline.
        while self.written_seq < seq and self._pending and self._writing is None and self.failure is None:
            self._schedule(0)
        if self.written_seq >= seq:
            return None
        if self.failure is not None:
            return fail(AuditFailing(self.failure))
        waiter: Deferred[None] = Deferred()
        self._waiters.append((seq, waiter))
        return waiter

    def _bounded_append(self, event: str, outcome: str, fields: Mapping[str, str]) -> bool:
        if len(self._pending) >= self._limits.backlog:
            self._dropped += 1
            return False
        self._append(event, outcome, fields)
        return True

    def _append(self, event: str, outcome: str, fields: Mapping[str, str]) -> int:
        if self._file_bytes >= self._limits.rotate_bytes:
            # The next line begins a new file, with the chain value so far.
            name = rotated_name(self._first_seq)
            self._rotations.append((self._seq + 1, name))
            self._file_bytes = 0
            self._first_seq = self._seq + 1
            self._append(CONTINUE, "ok", {"file": name, "previous": self._head})
        self._seq += 1
        line, self._head = trail_line(self._head, self._seq, int(self._clock.seconds()), event, outcome, fields)
        self._pending.append((self._seq, line))
        self._file_bytes += len(line)
        return self._seq

    def _close_window(self) -> None:
        """
        Write the summary of the refusals not written in full, open the next
        window, and apply retention.
        """
        summary, self._summary = self._summary, RefusalSummary(self._clock.seconds())
        for fields in summary.close():
            self._bounded_append("audit.summary", "denied", fields)
        self._schedule(FLUSH_SECONDS)
        self._retain()

    # -- writing ------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        """
        Write what is pending after C{delay}; at once for C{0} (the events
        recorded while that write runs go into the next one).
        """
        if self._writing is not None or not self._pending:
            return  # the write in flight schedules the next
        if delay == 0 and self.failure is None:
            if self._flush_call is not None:
                self._flush_call.cancel()
            self._flush()
        elif self._flush_call is None:
            self._flush_call = self._clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        if not self._pending:
            return
        if self._rotations and self._rotations[0][0] == self._pending[0][0]:
            self._writing = []
            self._writer.run_then(self._done, self._rotate, self._rotations[0][1])
            return
        if self._rotations:
            limit = self._rotations[0][0]
            cut = next((i for i, (seq, _) in enumerate(self._pending) if seq >= limit), len(self._pending))
            batch, self._pending = self._pending[:cut], self._pending[cut:]
        else:
            batch, self._pending = self._pending, []
        self._writing = batch
        data = batch[0][1] if len(batch) == 1 else b"".join([line for _, line in batch])
        self._writer.run_then(self._done, write_lines, self._fd, data, self._sync)

    def _done(self, succeeded: bool, result: Any) -> None:
        """The write in flight has ended (on the reactor thread)."""
        batch = self._writing
        assert batch is not None
        try:
            if succeeded:
                self._written(batch)
            else:
                self._failed(result, batch)
        finally:
            self._writing = None
        idle, self._idle = self._idle, []
        if self._pending and self.running:
            delay = RETRY_SECONDS if self.failure else 0 if self._waiters else FLUSH_SECONDS
            self._flush_call = self._clock.callLater(delay, self._flush)
        for waiter in idle:
            waiter.callback(None)

    def _written(self, batch: list[tuple[int, bytes]]) -> None:
        if batch:
            last = self.written_seq = batch[-1][0]
            # A line ends with its chain value: ...,"chain":"<64 hex digits>"}
            self.written_chain = batch[-1][1][-67:-3].decode("ascii")
            waiters = self._waiters
            if waiters:
                # Waiters are in seq order: those written are the first ones.
                cut = len(waiters)
                while cut and waiters[cut - 1][0] > last:
                    cut -= 1
                ready, self._waiters = waiters[:cut], waiters[cut:]
                for _, waiter in ready:
                    waiter.callback(None)
            if self._watchers:
                watchers, self._watchers = self._watchers, []
                for waiter in watchers:
                    waiter.callback(None)
        else:
            self._rotations.popleft()
            self._retain()
        if self.failure is not None:
            log.info("audit trail {path}: writing again ({dropped} events were dropped meanwhile)",
                     path=self.path, dropped=self._dropped)
            self.failure = None
            if self._dropped:
                self._append("audit.dropped", "failed", {"count": str(self._dropped)})
                self._dropped = 0

    def _failed(self, failure: Failure, batch: list[tuple[int, bytes]]) -> None:
        # write_lines left none of the batch in the file: keep it, in order,
        # for the next try, which waits longer than a batch does.
        self._pending[:0] = batch
        if self.failure is None:
            log.failure("audit trail {path}: write failed; retrying every {retry} s",
                        failure, path=self.path, retry=RETRY_SECONDS)
        self.failure = (f"audit trail {self.path} cannot be written"
                        f" ({failure.getErrorMessage()}); retrying every {RETRY_SECONDS:g} s")
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(AuditFailing(self.failure))

    def _settled(self) -> Deferred[None]:
        """Fires once no write is in flight."""
        if self._writing is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    def _rotate(self, name: str) -> None:
        fd = rotate(self.directory, name)
        os.close(self._fd)
        self._fd = fd

    def next_write(self) -> Deferred[None]:
        """
        Fires when the next batch of lines is durable (for readers that
        follow the trail).
        """
        d: Deferred[None] = Deferred(lambda d: self._watchers.remove(d) if d in self._watchers else None)
        self._watchers.append(d)
        return d

    def _retain(self) -> None:
        if self.running:
            retained = self.retention.run()
            if retained is not None:
                retained.addBoth(self._expired)

    def _expired(self, result: list[tuple[str, str]] | Failure) -> None:
        if isinstance(result, Failure):
            log.failure("audit trail {path}: retention failed", result, path=self.path)
            return
        for name, why in result:
            log.info("audit trail {path}: removed {name} ({why})", path=self.path, name=name, why=why)
            if not self._closed:
                self._bounded_append("audit.expire", "ok", {"file": name, "reason": why})
        self._schedule(FLUSH_SECONDS)

    @property
    def backlog(self) -> int:
        """
        Events recorded and not yet handed to a write (metrics).
        """
        return len(self._pending)

    # -- the service --------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._writer.start()
        self._housekeeping.start(WINDOW, now=False)
        self._schedule(FLUSH_SECONDS)
        log.info("audit trail {path}: chain head at start seq={seq} chain={chain}",
                 path=self.path, seq=self._seq, chain=self._head)

    def stopService(self) -> Deferred[None]:
        """
        Write everything recorded so far (events recorded meanwhile too),
        then close; what cannot be written goes to the system log.
        """
        super().stopService()
        if self._housekeeping.running:
            self._housekeeping.stop()
        for fields in self._summary.close():
            self._bounded_append("audit.summary", "denied", fields)
        self._summary = RefusalSummary(self._clock.seconds())
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None

        def drain(_: object) -> Deferred[None] | None:
            if self._pending and self.failure is None:
                self._flush()
                return self._settled().addCallback(drain)
            return None

        def close(_: object) -> None:
            self._closed = True
            if self._pending:
                log.error("audit trail {path}: {count} events could not be written:\n{lines}",
                          path=self.path, count=len(self._pending),
                          lines=b"".join(line for _, line in self._pending).decode("utf-8", "replace"))
            log.info("audit trail {path}: chain head at stop seq={seq} chain={chain}",
                     path=self.path, seq=self._seq, chain=self._head)
            self._writer.stop()
            os.close(self._fd)

        return self._settled().addBoth(drain).addCallback(close)
