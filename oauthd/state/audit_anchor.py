"""
Where the audit trail begins, kept in the journal: L{oauthd.state.model.State}
holds it as C{audit_anchor}.

    audit-anchor  seq previous   AuditAnchored   the trail's oldest kept line is seq,
                                                 continuing the chain value previous

Retention removes the trail's oldest files; before it does, the daemon
commits the sequence number of the first line it keeps and the chain value
that line continues (the last of the removed lines). The journal is
compacted, never pruned, so the anchor outlives the files, and
C{oauthctl audit verify} can tell a trail cut short by retention from one
whose head was deleted by hand. A daemon records the genesis anchor (seq 1,
64 zeros) when it first starts; the trail of a journal without any record
(from before anchors) is anchored once where it then begins.

The anchor only moves forward: a record naming an earlier line than the one
held (replayed after a snapshot that holds a later one) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from attrs import frozen

TAG = "audit-anchor"
GENESIS = "0" * 64


@frozen
class AuditAnchored:
    """
    The audit trail's oldest kept line is C{seq}, and the chain value it
    continues is C{previous} (64 hex digits).
    """

    seq: int
    previous: str


def encode(record: AuditAnchored) -> str:
    return f"{TAG}\t{record.seq}\t{record.previous}"


def decode(fields: list[str]) -> AuditAnchored:
    """
    @raise ValueError: if the fields are not a sequence number from 1 and a
        chain value.
    """
    if len(fields) != 3:
        raise ValueError(f"malformed {TAG} record: it has {len(fields)} fields, not 3")
    _, seq, previous = fields
    if not (seq.isdigit() and int(seq) >= 1 and len(previous) == 64
            and all(c in "0123456789abcdef" for c in previous)):
        raise ValueError(f"malformed {TAG} record: not a sequence number and a chain value")
    return AuditAnchored(int(seq), previous)


class AuditAnchor:
    """
    The anchor in memory: C{seq} 1 and the genesis value until a record
    moves it.

    @ivar recorded: whether the journal holds an anchor (the daemon records
        the genesis one when it first starts, so that a trail whose head is
        missing at a later start is not taken for one an older oauthd
        pruned).
    """

    def __init__(self) -> None:
        self.seq = 1
        self.previous = GENESIS
        self.recorded = False

    def __len__(self) -> int:
        return int(self.recorded)

    def apply(self, record: object) -> None:
        if isinstance(record, AuditAnchored) and (record.seq > self.seq or not self.recorded):
            self.seq, self.previous, self.recorded = record.seq, record.previous, True

    def snapshot(self) -> Iterator[str]:
        if self.recorded:
            yield encode(AuditAnchored(self.seq, self.previous))
