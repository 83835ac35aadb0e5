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

Lines are written in batches by a thread of the trail's own, at most
L{FLUSH_SECONDS} after the event, and fdatasync'd: recording an event costs
the request a JSON encoding and a hash, not a write.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog.files import open_private, write_all
from oauthd.eventlog.writer_pool import WriterPool

from oauthd.interfaces import IAuditSink

audit_log = Logger(namespace="oauthd.audit")
log = Logger()

AuditSink = Callable[[str, str, dict[str, str]], None]
"""
Takes an event name, its outcome and its cleaned fields.
"""

TRAIL_NAME = "audit.log"
GENESIS = "0" * 64
FLUSH_SECONDS = 0.05
"""
How long an event may wait in memory before its batch is written.
"""
RETRY_SECONDS = 5.0
"""
How long a batch whose write failed waits before the next try.
"""


@implementer(IAuditSink)
class _LogAudit:
    """
    The audit sink without a trail: a structured log event.
    """

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        details = " ".join(f"{name}={value}" for name, value in sorted(fields.items()))
        audit_log.info(
            "audit: {audit_event} {outcome} {details}",
            audit_event=event, outcome=outcome, details=details, **fields,
        )


log_audit = _LogAudit()


def chain_of(previous: str, body: bytes) -> str:
    """
    The chain value of a line whose text without its chain member is C{body}.
    """
    return hashlib.sha256(previous.encode("ascii") + b"\n" + body).hexdigest()


def _split_line(line: bytes) -> tuple[bytes, str]:
    """
    A trail line's body (without its chain member) and its chain value.

    @raise ValueError: if the line does not end with a chain member.
    """
    cut = line.rindex(b',"chain":"')
    chain = line[cut + 10 :]
    if len(chain) != 66 or not chain.endswith(b'"}'):
        raise ValueError("no chain member at the end of the line")
    return line[:cut] + b"}", chain[:64].decode("ascii")


def verify(path: str) -> tuple[int, int | None]:
    """
    Check the chain of the audit trail at C{path}.

    @return: the number of lines read (all of them, or up to the first that
        does not verify), and the number (from 1) of the first line whose
        chain does not verify, or C{None} if all do.
    """
    previous = GENESIS
    count = 0
    with open(path, "rb") as f:
        for count, line in enumerate(f, 1):
            try:
                body, chain = _split_line(line.rstrip(b"\n"))
            except (ValueError, UnicodeDecodeError):
                return count, count
            if chain_of(previous, body) != chain:
                return count, count
            previous = chain
    return count, None


@implementer(IAuditSink)
class AuditTrail(Service):
    """
    The hash-chained audit file, as an audit sink (call it) and a service
    that writes what is recorded and, when stopped, the rest.
    """

    def __init__(self, directory: str, clock: IReactorTime, reactor: Any, pool: Any = None) -> None:
        """
        Open (creating if need be) the trail in C{directory}. Blocking: call
        it before the reactor runs.

        @param reactor: delivers the writer's results (C{callFromThread}).
        @param pool: runs the writes, one at a time; by default the trail
            runs them on a writer thread of its own (a L{WriterPool}),
            started with the service and stopped once the trail is closed
            (tests pass one that runs inline).
        """
        self.path = os.path.join(directory, TRAIL_NAME)
        self._clock = clock
        self._fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        self._seq, self._head = self._resume()
        self._pending: list[bytes] = []
        self._flush_call: Any = None
        self._writing: Deferred[None] | None = None
        self._writer = WriterPool(reactor, "oauthd-audit", pool)
        self._closed = False
        self._failing = False

    def _resume(self) -> tuple[int, str]:
        """
        The sequence number and chain value of the last line, cutting off a
        line left half-written by a crash.
        """
        size = os.fstat(self._fd).st_size
        if not size:
            return 0, GENESIS
        start = max(0, size - 65536)
        tail = os.pread(self._fd, size - start, start)
        end = tail.rfind(b"\n") + 1
        if start + end < size:
            log.warn("audit trail {path}: cut off a half-written last line ({count} bytes)",
                     path=self.path, count=size - start - end)
            os.ftruncate(self._fd, start + end)
        lines = tail[:end].splitlines()
        if not lines:
            return 0, GENESIS
        try:
            body, chain = _split_line(lines[-1])
            seq = json.loads(body)["seq"]
            if type(seq) is not int:
                raise ValueError("seq is not an integer")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            # Carry on from the damaged line; verify() will point at it.
            log.error("audit trail {path}: last line unreadable ({error}); chaining on from it",
                      path=self.path, error=str(e))
            return 0, hashlib.sha256(lines[-1]).hexdigest()
        return seq, chain

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        if self._closed:
            # Something still running after shutdown: the system log has it.
            log_audit(event, outcome, fields)
            return
        self._seq += 1
        record: dict[str, Any] = {
            "seq": self._seq, "time": int(self._clock.seconds()), "event": event, "outcome": outcome,
        }
        for name in sorted(fields):
            if name not in record and name != "chain":
                record[name] = fields[name]
        body = json.dumps(record, separators=(",", ":")).encode("utf-8")
        self._head = chain_of(self._head, body)
        self._pending.append(body[:-1] + b',"chain":"' + self._head.encode("ascii") + b'"}\n')
        if self._flush_call is None and self._writing is None:
            self._flush_call = self._clock.callLater(FLUSH_SECONDS, self._flush)

    def _flush(self) -> Deferred[None]:
        self._flush_call = None
        batch, self._pending = self._pending, []
        written: Deferred[None] = self._writer.run(self._write, b"".join(batch))
        self._writing = written

        def failed(failure: Failure) -> None:
            # _write left none of the batch in the file: keep it, in order,
            # for the next try, which waits longer than a batch does.
            log.failure("audit trail {path}: write failed; retrying", failure, path=self.path)
            self._pending[:0] = batch
            self._failing = True

        def done(_: None) -> None:
            self._writing = None
            if self._pending and self.running:
                delay = RETRY_SECONDS if self._failing else FLUSH_SECONDS
                self._flush_call = self._clock.callLater(delay, self._flush)

        self._failing = False
        written.addErrback(failed).addCallback(done)
        return written

    def _write(self, data: bytes) -> None:
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, data)
            os.fdatasync(self._fd)
        except OSError:
            # A batch half in the file would leave a torn line mid-file.
            os.ftruncate(self._fd, size)
            raise

    def startService(self) -> None:
        super().startService()
        self._writer.start()
        log.info("audit trail {path}: chain head at start seq={seq} chain={chain}",
                 path=self.path, seq=self._seq, chain=self._head)

    def stopService(self) -> Deferred[None]:
        """
        Write everything recorded so far (events recorded meanwhile too),
        then close; what cannot be written goes to the system log.
        """
        super().stopService()
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        waiting = self._writing if self._writing is not None else succeed(None)

        def drain(_: object) -> Deferred[None] | None:
            if self._pending and not self._failing:
                return self._flush().addCallback(drain)
            return None

        def close(_: object) -> None:
            self._closed = True
            if self._pending:
                log.error("audit trail {path}: {count} events could not be written:\n{lines}",
                          path=self.path, count=len(self._pending),
                          lines=b"".join(self._pending).decode("utf-8", "replace"))
            log.info("audit trail {path}: chain head at stop seq={seq} chain={chain}",
                     path=self.path, seq=self._seq, chain=self._head)
            self._writer.stop()
            os.close(self._fd)

        return waiting.addCallback(drain).addCallback(close)
