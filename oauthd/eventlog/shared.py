# -*- test-case-name: tests.test_eventlog_contract -*-
"""
L{MemorySharedLog}: one event log in memory shared by several simulated
nodes (L{SharedLogNode}, each an L{IEventLog}), for deterministic tests of
what several daemons over one PostgreSQL log do.  It keeps the PostgreSQL
log's rules: dense positions, claims decided at append for every node,
records chained by hash, snapshots plus tail at start.  Nothing is delivered
until the test says so (L{SharedLogNode.step}, L{MemorySharedLog.deliver}),
so a test can hold one node behind the others; and a test can rewind the
log (a database restored from a backup) to see the nodes refuse it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from attrs import define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed

from oauthd.eventlog.chain import GENESIS, link
from oauthd.eventlog.errors import JournalClosed, JournalError, LogDiverged
from oauthd.eventlog.format import HEADER_SIZE, check_payload, record_bytes
from oauthd.eventlog.local import ClaimTable
from oauthd.interfaces import Claim, Deliver, IEventLog

__all__ = ["MemorySharedLog", "SharedLogNode"]


@define(eq=False)
class MemorySharedLog:
    """
    The shared log itself: its records (payload and hash, position i at
    index i - 1), its claims and its latest snapshot.
    """

    records: list[tuple[bytes, bytes]] = field(factory=list)
    claims: ClaimTable = field(factory=ClaimTable)
    # (position, hash there, payloads)
    snapshot: tuple[int, bytes, list[bytes]] = (0, GENESIS, [])
    nodes: list[SharedLogNode] = field(factory=list)

    @property
    def head(self) -> int:
        """
        The position of the last record.
        """
        return len(self.records)

    def hash_at(self, position: int) -> bytes:
        return self.records[position - 1][1] if position else GENESIS

    def node(self) -> SharedLogNode:
        """
        A new node, started as a daemon is: the latest snapshot, then every
        record after it.
        """
        position, _, payloads = self.snapshot
        tail = [payload for payload, _ in self.records[position:]]
        node = SharedLogNode(self, loaded=payloads + tail, cursor=self.head,
                             cursor_hash=self.hash_at(self.head), snapshot_records=len(payloads))
        self.nodes.append(node)
        return node

    def deliver(self) -> None:
        """
        Every node delivers every record it has not yet.
        """
        for node in list(self.nodes):
            node.step()

    def rewind(self, position: int) -> None:
        """
        Lose every record after C{position}, as a database restored from an
        older backup would.
        """
        del self.records[position:]

    def _append(self, payloads: Sequence[bytes]) -> int:
        previous = self.hash_at(self.head)
        for payload in payloads:
            previous = link(previous, self.head + 1, payload)
            self.records.append((payload, previous))
        return self.head


@implementer(IEventLog)
@define(eq=False)
class SharedLogNode:
    """
    One node's view of a L{MemorySharedLog}.  Appends are committed at once
    (and their claims decided); they fire once delivered to this node's
    follower, if it has one.
    """

    shared: MemorySharedLog
    _loaded: list[bytes] | None
    _cursor: int
    _cursor_hash: bytes
    snapshot_records: int = 0
    _deliver: Deliver | None = None
    _waiting: list[tuple[int, Deferred[None]]] = field(factory=list)
    _failure: JournalError | None = None
    _closed: bool = False

    @property
    def position(self) -> int:
        """
        See L{IEventLog.position}.
        """
        return self._cursor

    @property
    def record_count(self) -> int:
        """
        See L{IEventLog.record_count}: what a node starting now would read.
        """
        position, _, payloads = self.shared.snapshot
        return len(payloads) + self.shared.head - position

    @property
    def byte_count(self) -> int:
        """
        See L{IEventLog.byte_count}, counted as the file format would.
        """
        position, _, payloads = self.shared.snapshot
        tail = [payload for payload, _ in self.shared.records[position:]]
        return HEADER_SIZE + record_bytes(payloads) + record_bytes(tail)

    def _refusal(self) -> Deferred[None] | None:
        if self._closed:
            return fail(JournalClosed("this node's log is closed"))
        if self._failure is not None:
            return fail(self._failure)
        return None

    def append(self, payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        """
        See L{IEventLog.append}.
        """
        batch = [check_payload(p) for p in payloads]
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        conflict = self.shared.claims.conflict(claims)
        if conflict is not None:
            return fail(conflict)
        self.shared.claims.take(claims)
        last = self.shared._append(batch)
        if self._deliver is None:
            self._cursor, self._cursor_hash = last, self.shared.hash_at(last)
            return succeed(None)
        return self._when_delivered(last)

    def _when_delivered(self, position: int) -> Deferred[None]:
        if position <= self._cursor:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._waiting.append((position, done))
        return done

    def follow(self, deliver: Deliver) -> None:
        """
        See L{IEventLog.follow}; records are delivered by L{step}.
        """
        if self._deliver is not None:
            raise RuntimeError("this log has a follower already")
        self._deliver = deliver

    def sync(self) -> Deferred[None]:
        """
        See L{IEventLog.sync}: fires when L{step} has delivered through the
        head as it is now.
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if self._deliver is None:
            return succeed(None)
        if self.shared.head < self._cursor:
            self._diverge(f"its head is at position {self.shared.head}")
            return fail(self._failure)
        return self._when_delivered(self.shared.head)

    def step(self, most: int | None = None) -> int:
        """
        Deliver the next C{most} records this node has not (all, by
        default); how many were delivered.  A log that no longer continues
        what was delivered puts the node in the failed state (L{LogDiverged}).
        """
        if self._deliver is None or self._failure is not None or self._closed:
            return 0
        shared = self.shared
        if shared.head < self._cursor or shared.hash_at(self._cursor) != self._cursor_hash:
            self._diverge("the record at the cursor is gone or has another hash")
            return 0
        end = shared.head if most is None else min(shared.head, self._cursor + most)
        delivered = 0
        while self._cursor < end:
            position = self._cursor + 1
            payload, hash_ = shared.records[position - 1]
            self._cursor, self._cursor_hash = position, hash_
            self._deliver(position, payload)
            delivered += 1
        ready = [done for position, done in self._waiting if position <= self._cursor]
        self._waiting = [(p, d) for p, d in self._waiting if p > self._cursor]
        for done in ready:
            done.callback(None)
        return delivered

    def _diverge(self, why: str) -> None:
        self._failure = LogDiverged(f"the log no longer holds what this node applied through"
                                    f" position {self._cursor}: {why}")
        waiting, self._waiting = self._waiting, []
        for _, done in waiting:
            done.errback(self._failure)

    def sweep_claims(self, before: float) -> Deferred[int]:
        """
        See L{IEventLog.sweep_claims}.
        """
        return succeed(self.shared.claims.sweep(before))

    def replay(self) -> Iterator[bytes]:
        """
        See L{IEventLog.replay}.
        """
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            raise RuntimeError("replay() gives the records read at start, once")
        return iter(loaded)

    def compact(self, snapshot: Iterable[bytes]) -> Deferred[None]:
        """
        See L{IEventLog.compact}: the shared log's snapshot becomes
        C{snapshot}, at this node's position.
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        try:
            payloads = [check_payload(p) for p in snapshot]
        except Exception:
            return fail()
        self.shared.snapshot = (self._cursor, self._cursor_hash, payloads)
        self._loaded = None
        return succeed(None)

    def close(self) -> Deferred[None]:
        """
        See L{IEventLog.close}.
        """
        self._closed = True
        if self in self.shared.nodes:
            self.shared.nodes.remove(self)
        return succeed(None)
