"""
The audit trail across the nodes of a shared log: a change's audit events
travel in the log with its records (L{oauthd.state.audit_records}), and
every node, its writer included, writes them to its own trail when the log
delivers them, at their log position (L{AuditRelay}).

An append whose record was dropped where it was applied (its preconditions
no longer held there: the writer answers that the change was refused) made
no change: its events are written with the outcome C{superseded} instead
of theirs, on every node alike, for every node holds the same state there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from oauthd.state.audit_records import PREFIX as AUDIT_PREFIX, AuditNoted, decode, encode_events
from oauthd.state.decision import AuditEvent

__all__ = ["AUDIT_PREFIX", "AuditRelay", "Write"]

log = Logger()

Write = Callable[[int, AuditNoted, bool], "Deferred[None] | None"]
"""
Writes the events of the record at a position to the trail (C{True}: the
change was superseded); fires once they are durable.
"""


@define(eq=False)
class AuditRelay:
    """
    Carries a node's audit events into the shared log, and hands each
    node's events, as the log delivers them, to C{write}.

    @ivar node: this node's id.
    @ivar write: until it is set (L{attach}: the trail opens after the
        log is replayed), what replay delivers is held, by its number in
        the log after the snapshot (see L{replayed}).
    @ivar begins: the first position after the snapshot whose events
        replay can tell: a change whose records begin in the snapshot (it
        was written in the middle of an append) cannot be told ok from
        superseded there, so it counts as before the snapshot.
    """

    node: str
    write: Write | None = None
    begins: int = 1
    _dropped_at: int = 0
    _seen: int = 0
    _straddled: int = 0
    _held: list[tuple[int, AuditNoted, bool]] = field(factory=list)

    def payload(self, events: Sequence[AuditEvent], records: int, now: float) -> bytes:
        """
        The C{audit} record of a change's C{events}, appended after its
        C{records} records.
        """
        return encode_events(self.node, int(now), records, [(e.event, e.outcome, e.fields) for e in events])

    def applied(self, position: int, payload: bytes, taken: bool | None) -> Deferred[None] | None:
        """
        The record C{payload} at C{position} was applied (C{taken}), dropped
        (C{False}) or skipped as malformed (C{None}).

        @return: if it is an C{audit} record, what C{write} gave.
        """
        self._seen = position
        if taken is False:
            self._dropped_at = position
            return None
        if not payload.startswith(AUDIT_PREFIX):
            return None
        try:
            record = decode(payload.decode("utf-8").split("\t"))
        except (ValueError, UnicodeDecodeError):
            log.error("log position {position}: skipped a malformed audit record", position=position)
            return None
        superseded = self._dropped_at >= position - record.records
        if self.write is None:
            if position - record.records < 1:
                # (Numbered from 1 after the snapshot.) What was dropped
                # before this change's audit record is in the snapshot.
                self._straddled = position
            else:
                self._held.append((position, record, superseded))
            return None
        return self.write(position, record, superseded)

    def replayed(self, last: int) -> None:
        """
        Replay numbered the log after the snapshot from 1, and ended at
        position C{last}: what it held is put at its positions, and
        L{begins} is set.
        """
        shift = last - self._seen
        self.begins = shift + 1 + self._straddled
        if self._dropped_at:
            self._dropped_at += shift
        self._held = [(number + shift, record, superseded) for number, record, superseded in self._held]

    def attach(self, write: Write) -> None:
        """
        Write what replay held, and from now on what the log delivers, with
        C{write}.
        """
        self.write = write
        held, self._held = self._held, []
        for position, record, superseded in held:
            written = write(position, record, superseded)
            if written is not None:
                # A write that fails is the trail's to report and retry.
                written.addErrback(lambda _: None)
