"""
Where the audit trail begins, kept in the journal: L{oauthd.state.model.State}
holds it as C{audit_anchor}.

    audit-anchor  seq previous [node]   AuditAnchored   the trail's oldest kept line is seq,
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

Over an event log several nodes share, each node keeps its own trail, so
each has its own anchor: the record names the node (a single daemon's
names none, and its bytes are as they were).
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
    node: str = ""


def encode(record: AuditAnchored) -> str:
    node = f"\t{record.node}" if record.node else ""
    return f"{TAG}\t{record.seq}\t{record.previous}{node}"


def decode(fields: list[str]) -> AuditAnchored:
    """
    @raise ValueError: if the fields are not a sequence number from 1 and a
        chain value.
    """
    if len(fields) not in (3, 4) or (len(fields) == 4 and not fields[3]):
        raise ValueError(f"malformed {TAG} record: it has {len(fields)} fields, not 3 or 4")
    _, seq, previous, *node = fields
    if not (seq.isdigit() and int(seq) >= 1 and len(previous) == 64
            and all(c in "0123456789abcdef" for c in previous)):
        raise ValueError(f"malformed {TAG} record: not a sequence number and a chain value")
    return AuditAnchored(int(seq), previous, *node)


class AuditAnchor:
    """
    The anchor in memory: C{seq} 1 and the genesis value until a record
    moves it.

    @ivar recorded: whether the journal holds an anchor (the daemon records
        the genesis one when it first starts, so that a trail whose head is
        missing at a later start is not taken for one an older oauthd
        pruned).
    @ivar nodes: each node's anchor (seq, previous), over a shared log.
    """

    def __init__(self) -> None:
        self.seq = 1
        self.previous = GENESIS
        self.recorded = False
        self.nodes: dict[str, tuple[int, str]] = {}

    def __len__(self) -> int:
        return int(self.recorded) + len(self.nodes)

    def has(self, node: str) -> bool:
        """
        Whether the log holds an anchor of C{node}'s trail (C{""}: the
        single daemon's).
        """
        return node in self.nodes if node else self.recorded

    def of(self, node: str) -> tuple[int, str]:
        """
        Where C{node}'s trail begins (C{""}: the single daemon's): the seq
        of its oldest kept line, and the chain value that line continues.
        """
        if node:
            return self.nodes.get(node, (1, GENESIS))
        return self.seq, self.previous

    def apply(self, record: object) -> None:
        if not isinstance(record, AuditAnchored):
            return
        if record.node:
            if record.node not in self.nodes or record.seq > self.nodes[record.node][0]:
                self.nodes[record.node] = (record.seq, record.previous)
        elif record.seq > self.seq or not self.recorded:
            self.seq, self.previous, self.recorded = record.seq, record.previous, True

    def snapshot(self) -> Iterator[str]:
        if self.recorded:
            yield encode(AuditAnchored(self.seq, self.previous))
        for node, (seq, previous) in sorted(self.nodes.items()):
            yield encode(AuditAnchored(seq, previous, node))
