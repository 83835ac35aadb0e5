"""
The audit trail of a node that shares its event log with others.

Each node keeps its own chained trail (L{oauthd.services.audit}); the events
of every change travel in the log (L{oauthd.state.audit_records}), and each
node writes each of them to its trail once, as the log delivers it, its own
included (L{ClusterTrail.write}); while its trail cannot write, it holds
no more of them than its backlog, and says which it left out. Such a line names the node that made the
change (C{node}), the change's log position (C{pos}), when the node made
it (C{at}, POSIX seconds) and, if the change has several events, how many
(C{events}), so the lines of one change agree on every node
but for their C{seq}, C{time} and C{chain}::

    {"seq":41,"time":1800000003,"event":"client.add","outcome":"ok","at":"1800000002",
     "client_id":"c...","node":"a1","peer_uid":"0","pos":"1207","chain":"..."}

The trail remembers how far it got by its lines: at start, the position of
its last line that has one (L{last_position}). The log after the latest
snapshot is replayed then, and only events past that position are written,
so a restart writes each event once (a node that stops writes how far it
followed the log: an C{audit.seen} line; one killed between the lines of a
change writes the ones it lacks, L{last_written}). Events before the snapshot are
no longer read: if the trail stopped before the snapshot's position, one
C{audit.gap} line says which positions this node did not see (the other
nodes' trails have those events). A log that no longer reaches the trail's
position (a database restored from an older backup) gets an
C{audit.rewound} line, and the trail counts on from the log's head.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from oauthd.services.audit_files import split_line, trail_files

log = Logger()

NODE = "node"
POSITION = "pos"
AT = "at"
SUPERSEDED = "superseded"
SEEN = "audit.seen"
EVENTS = "events"

_CHUNK = 1 << 20
_NEEDLE = b'"' + POSITION.encode() + b'":"'


class _Limits(Protocol):
    @property
    def backlog(self) -> int: ...


class _Sink(Protocol):
    directory: str

    @property
    def backlog(self) -> int: ...

    @property
    def limits(self) -> _Limits: ...

    def record_change(self, event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]: ...


class _Noted(Protocol):
    """
    An C{audit} record (L{oauthd.state.audit_records.AuditNoted}).
    """

    node: str
    at: int

    @property
    def events(self) -> tuple[_Event, ...]: ...


class _Event(Protocol):
    event: str
    outcome: str
    fields: Mapping[str, str]


def _placed(line: bytes) -> tuple[int, str, int] | None:
    """
    The log position, event and count of its change's events of a line
    that has a position.
    """
    if _NEEDLE not in line:
        return None
    try:
        record = json.loads(split_line(line)[0])
        value, count = record.get(POSITION), record.get(EVENTS, "1")
        if isinstance(value, str) and value.isdigit():
            return int(value), str(record.get("event")), int(count) if str(count).isdigit() else 1
    except (ValueError, UnicodeDecodeError, AttributeError):
        pass
    return None


def _backwards(directory: str) -> Iterator[bytes]:
    """
    The trail's lines, from the end of the newest file back (blocking).
    """
    for path in reversed(trail_files(directory)):
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            rest = b""
            while end > 0:
                start = max(0, end - _CHUNK)
                f.seek(start)
                lines = (f.read(end - start) + rest).split(b"\n")
                # The first piece may be a line's end; it is read with the next chunk.
                rest = lines[0] if start else b""
                yield from reversed(lines[1:] if start else lines)
                end = start


def last_written(directory: str) -> tuple[int, int | None]:
    """
    The log position of the trail's last line that has one (0 for none),
    and how many lines of that position's events end the trail if not all
    of them (else C{None}): a node killed between the lines of one change
    has only the first ones (blocking: at start).
    """
    position, lines, wanted = 0, 0, 0
    for line in _backwards(directory):
        found = _placed(line)
        if found is None:
            continue
        if not position:
            if found[1] == SEEN:
                return found[0], None
            position, _, wanted = found
        elif found[0] != position:
            break
        lines += 1
    return position, lines if lines < wanted else None


def last_position(directory: str) -> int:
    """
    The log position of the trail's last line that has one (0 for none).
    """
    return last_written(directory)[0]


class ClusterTrail(Service):
    """
    Writes the events the shared log delivers to this node's trail, each
    once (see the module's docstring). As a service, stopped once the log
    is closed, it writes how far the node followed the log (an
    C{audit.seen} line), so that a start after a snapshot written since
    does not take what it saw for a gap.

    @ivar position: the log position through which the trail has the
        events (or says it will not have them).
    """

    def __init__(self, trail: _Sink, node: str, followed: Callable[[], int] = lambda: 0) -> None:
        """
        Find how far the trail got (blocking: before the reactor runs).

        @param followed: the position of the last record the log delivered.
        """
        self._trail = trail
        self._followed = followed
        self.node = node
        self.position, self._lines_at_position = last_written(trail.directory)
        # Positions whose events were not written: the trail could not
        # write, and held as many events as it may (see write()).
        self._unwritten: tuple[int, int] | None = None

    def start(self, begins: int, head: int) -> None:
        """
        The log was replayed from position C{begins} (after its latest
        snapshot) to C{head}: say what this trail cannot have.
        """
        if self.position > head:
            log.warn("audit trail: it has events through log position {position}, but the log ends at"
                     " {head} (restored from an older backup?): counting on from there",
                     position=self.position, head=head)
            self._note("audit.rewound", {"trail": str(self.position), "log": str(head)})
            self.position, self._lines_at_position = head, None
            return
        # (The position whose events the trail has only the first lines of
        # is missing too.)
        first = self.position + (self._lines_at_position is None)
        if begins > first:
            log.warn("audit trail: the events at log positions {first} to {last} were not seen by this node"
                     " (a snapshot passed them while it was down); the other nodes' trails hold them",
                     first=first, last=begins - 1)
            self._note("audit.gap", {"from": str(first), "to": str(begins - 1), "reason": "snapshot"})
            self.position, self._lines_at_position = begins - 1, None

    def _note(self, event: str, fields: dict[str, str], outcome: str = "failed") -> None:
        fields[NODE] = self.node
        self._trail.record_change(event, outcome, fields).addErrback(lambda _: None)

    def stopService(self) -> None:
        super().stopService()
        followed = self._followed()
        if self._unwritten is not None:
            # Not past the events left out: a start writes them from the log
            # (or says it no longer holds them).
            return
        if followed > self.position:
            # Every record through there was delivered and its events written.
            self.position = followed
            self._note(SEEN, {POSITION: str(followed)}, "ok")

    def write(self, position: int, record: _Noted, superseded: bool) -> Deferred[None] | None:
        """
        Write the events of the C{audit} record at C{position}, unless the
        trail has them; as superseded if a record of their change was
        dropped where it was applied (the change was not made).

        @return: fires once they are durable (fails as the trail's
            L{record_change} does); C{None} if there was nothing to write.
        """
        events = record.events
        if position == self.position and self._lines_at_position is not None:
            # The trail has the first lines of these events only.
            events = events[self._lines_at_position:]
        elif position <= self.position:
            return None
        self._lines_at_position = None
        if not events:
            return None
        self.position = position
        trail = self._trail
        if record.node != self.node and trail.backlog >= trail.limits.backlog:
            # The other nodes' changes go on while this trail cannot write
            # (a full disk, or a write that hangs on a stalled one): what it
            # holds meanwhile is bounded. (This node's own are never left
            # out: each waits for its answer, and none is taken while the
            # trail fails.)
            first = self._unwritten[0] if self._unwritten else position
            self._unwritten = (first, position)
            return None
        if self._unwritten is not None:
            (first, last), self._unwritten = self._unwritten, None
            log.warn("audit trail: the events at log positions {first} to {last} were not written (the"
                     " trail could not write); the other nodes' trails hold them",
                     first=first, last=last)
            self._note("audit.gap", {"from": str(first), "to": str(last), "reason": "unwritten"})
        where = {NODE: record.node, POSITION: str(position), AT: str(record.at)}
        if len(record.events) > 1:
            where[EVENTS] = str(len(record.events))
        written = [
            self._trail.record_change(e.event, SUPERSEDED if superseded else e.outcome, {**e.fields, **where})
            for e in events
        ]
        # The trail makes its lines durable in order: the last one's
        # outcome is theirs.
        for earlier in written[:-1]:
            earlier.addErrback(lambda _: None)
        return written[-1]
