"""
A compaction of the shared log, on the reactor side: the node's snapshot
written a chunk per job on the snapshot thread, the state's records taken a
slice per reactor turn; then the partitions no node needs dropped.  One
node at a time (L{Snapshotter.begin} takes the compaction lock): a node
that finds another one at it, or a snapshot recent enough, writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from attrs import define, field, frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog.format import RECORD_OVERHEAD, check_payload
from oauthd.eventlog.postgresql.snapshots import Began, Snapshotter
from oauthd.eventlog.writer_pool import WriterPool

__all__ = ["Compacted", "Compaction"]

_log = Logger()

_SLICE_RECORDS = 4096
_SLICE_BYTES = 1 << 20
_SLICE_SECONDS = 0.002


@frozen
class Compacted:
    """
    What a start would read now: C{records} of C{size} bytes (file format
    sizes), the latest snapshot's and the log's after it, as far as this
    node counted; C{written}: whether this node wrote the snapshot.
    """

    records: int
    size: int
    written: bool


@define(eq=False)
class Compaction:
    """
    One compaction by this node: start it with L{run}; the log counts what
    it appends meanwhile with L{count}.
    """

    snapshot: Iterator[bytes]
    position: int
    _pool: WriterPool
    _snapshotter: Snapshotter
    _retention: float
    _done: Deferred[Compacted] = field(factory=Deferred)
    _id: int = 0
    _seq: int = 0
    _records: int = 0
    _bytes: int = 0
    # What was counted after the snapshot's position while it was written.
    _tail_records: int = 0
    _tail_bytes: int = 0

    def run(self) -> Deferred[Compacted]:
        began = self._pool.run(self._snapshotter.begin, self.position)
        began.addCallbacks(self._began, self._failed)
        return self._done

    def count(self, position: int, size: int) -> None:
        """
        A record at C{position}, of C{size} bytes, was appended or delivered.
        """
        if position > self.position:
            self._tail_records += 1
            self._tail_bytes += size

    def _began(self, began: Began) -> None:
        if not began.id:
            _log.info("event log: no snapshot written at {position}: another node is compacting, or"
                      " the latest snapshot (at {latest}) is recent enough",
                      position=self.position, latest=began.latest_position)
            behind = max(self.position - began.latest_position, 0)
            self._done.callback(Compacted(began.latest_records + behind + self._tail_records, 0, False))
            return
        self._id = began.id
        self._next_chunk(None)

    def _next_chunk(self, _: object) -> None:
        chunk: list[bytes] = []
        size = 0
        deadline = time.perf_counter() + _SLICE_SECONDS
        try:
            for payload in self.snapshot:
                chunk.append(check_payload(payload))
                size += RECORD_OVERHEAD + len(payload)
                if len(chunk) >= _SLICE_RECORDS or size >= _SLICE_BYTES or time.perf_counter() >= deadline:
                    break
        except Exception:
            self._failed(Failure())
            return
        if chunk:
            self._seq += 1
            self._records += len(chunk)
            self._bytes += size
            written = self._pool.run(self._snapshotter.chunk, self._id, self._seq, chunk)
            written.addCallbacks(self._next_chunk, self._failed)
        else:
            finished = self._pool.run(self._snapshotter.finish, self._id, self._records, self._retention)
            finished.addCallbacks(self._finished, self._failed)

    def _finished(self, dropped: int) -> None:
        _log.info("event log: snapshot of {records} records at position {position}; {dropped} old"
                  " partitions dropped", records=self._records, position=self.position, dropped=dropped)
        self._done.callback(Compacted(self._records + self._tail_records,
                                      self._bytes + self._tail_bytes, True))

    def _failed(self, failure: Failure) -> None:
        _log.failure("event log: the snapshot failed; the log is unchanged", failure)

        def abandoned(_: object) -> None:
            self._done.errback(failure)

        if self._id:
            self._pool.run(self._snapshotter.abort, self._id).addBoth(abandoned)
        else:
            abandoned(None)
