"""
Snapshots of the state in the shared log: written in chunks by the node
that compacts, read by nodes that start; and the other jobs of the
snapshot thread (the claims' sweep).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import psycopg
from attrs import define, frozen
from psycopg import sql

from oauthd.eventlog.errors import LogUnavailable
from oauthd.eventlog.postgresql.link import Link
from oauthd.eventlog.postgresql.node import LIVE_SECONDS
from oauthd.eventlog.postgresql.sealing import Sealer

__all__ = ["COMPACT_LOCK", "SWEEP_LOCK", "Began", "Snapshotter", "frame", "unframe"]

COMPACT_LOCK = 0x6F61757468640002
"""
The advisory lock held by the one node writing a snapshot and dropping
partitions.
"""

SWEEP_LOCK = 0x6F61757468640003
"""
The advisory lock held by the one node sweeping expired claims.
"""


@frozen
class Began:
    """
    A snapshot begun (C{id}), or not (C{id} 0: another node is writing one,
    or the latest is recent enough); and the latest complete one's position
    (-1 if none) and records.
    """

    id: int
    latest_position: int
    latest_records: int

_FRAME = struct.Struct(">I")


def frame(payloads: Sequence[bytes]) -> bytes:
    """
    C{payloads} as one snapshot chunk: each one's length, then itself.
    """
    return b"".join(_FRAME.pack(len(p)) + p for p in payloads)


def unframe(data: bytes) -> list[bytes]:
    """
    The payloads of a snapshot chunk (L{frame}).
    """
    payloads = []
    offset = 0
    while offset < len(data):
        (size,) = _FRAME.unpack_from(data, offset)
        offset += _FRAME.size
        payloads.append(data[offset:offset + size])
        offset += size
    return payloads


@define
class Snapshotter:
    """
    The snapshot thread's jobs: a snapshot written chunk by chunk, and made
    the latest complete one at the end; and the claims' sweep.
    """

    _link: Link
    node: str
    _sealer: Sealer

    @classmethod
    def to(cls, uri: str, name: str, node: str, sealer: Sealer | None = None) -> Snapshotter:
        return cls(Link(uri, name), node, sealer or Sealer(None))

    def _run(self, query: Any, args: Sequence[object]) -> Any:
        try:
            return self._link.get().execute(query, args).fetchone()
        except psycopg.Error as e:
            raise self._link.broken(e) from None

    def begin(self, position: int) -> Began:
        """
        Start a snapshot of the state at C{position}, unless another node
        is writing one (it holds the compaction lock) or the latest one is
        at C{position} or after it already.
        """
        latest = self._run("SELECT coalesce(max(pos), -1), coalesce((SELECT records FROM oauthd_snapshots"
                           " WHERE complete ORDER BY pos DESC, id DESC LIMIT 1), 0)"
                           " FROM oauthd_snapshots WHERE complete", ())
        if latest[0] >= position or not self._run("SELECT pg_try_advisory_lock(%s)", (COMPACT_LOCK,))[0]:
            return Began(0, int(latest[0]), int(latest[1]))
        row = self._run(
            "INSERT INTO oauthd_snapshots (pos, hash, node) VALUES (%s, coalesce("
            " (SELECT hash FROM oauthd_log WHERE pos = %s), decode(repeat('00', 32), 'hex')), %s)"
            " RETURNING id",
            (position, position, self.node),
        )
        return Began(int(row[0]), int(latest[0]), int(latest[1]))

    def chunk(self, snapshot: int, seq: int, payloads: Sequence[bytes]) -> None:
        self._run(
            "INSERT INTO oauthd_snapshot_chunks (snapshot, seq, data) VALUES (%s, %s, %s) RETURNING seq",
            (snapshot, seq, self._sealer.seal(frame(payloads))),
        )

    def finish(self, snapshot: int, records: int, retention: float) -> int:
        """
        Make C{snapshot} complete; keep only it and the one before; drop
        the log's partitions that no node needs (L{droppable}); release the
        compaction lock.

        @param retention: seconds of records kept whatever the snapshots
            (the audit retention).
        @return: how many partitions were dropped.
        """
        try:
            self._run("UPDATE oauthd_snapshots SET complete = true, records = %s WHERE id = %s RETURNING id",
                      (records, snapshot))
            self._run(
                "WITH old AS (DELETE FROM oauthd_snapshots WHERE complete AND id NOT IN"
                " (SELECT id FROM oauthd_snapshots WHERE complete ORDER BY pos DESC, id DESC LIMIT 2)"
                " RETURNING id) SELECT count(*) FROM old",
                (),
            )
            return self._drop(retention)
        finally:
            self._unlock()

    def _drop(self, retention: float) -> int:
        # Below the older of the two snapshots kept (a node starting now may
        # be reading it) and below every live node's applied position.
        # Nothing while there is no previous snapshot.
        keep = self._run(
            "SELECT CASE WHEN count(*) >= 2 THEN least(min(pos), (SELECT min(applied) FROM oauthd_nodes"
            " WHERE seen > now() - make_interval(secs => %s))) END FROM oauthd_snapshots WHERE complete",
            (LIVE_SECONDS,),
        )[0]
        size = self._run("SELECT partition_size FROM oauthd_head", ())[0]
        dropped = 0
        connection = self._link.get()
        try:
            for (name,) in connection.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'oauthd_log'::regclass ORDER BY 1"
            ).fetchall():
                k = int(name.removeprefix("oauthd_log_p"))
                if keep is None or (k + 1) * size > keep:
                    continue
                recent = connection.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE at > now() - make_interval(secs => %s))")
                    .format(sql.Identifier(name)), (retention,)).fetchone()
                if recent is not None and not recent[0]:
                    connection.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    dropped += 1
        except psycopg.Error as e:
            raise self._link.broken(e) from None
        return dropped

    def _unlock(self) -> None:
        try:
            self._run("SELECT pg_advisory_unlock(%s)", (COMPACT_LOCK,))
        except LogUnavailable:
            pass  # the session is gone, and its lock with it

    def sweep_claims(self, before: float) -> int:
        """
        Forget the claims that expired before C{before}; how many (0 if
        another node is sweeping: one at a time).
        """
        try:
            connection = self._link.get()
            with connection.transaction():
                locked = connection.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK,)).fetchone()
                if not (locked and locked[0]):
                    return 0
                row = connection.execute("WITH gone AS (DELETE FROM oauthd_claims WHERE expires < %s"
                                         " RETURNING 1) SELECT count(*) FROM gone", (before,)).fetchone()
        except psycopg.Error as e:
            raise self._link.broken(e) from None
        assert row is not None
        return int(row[0])

    def abort(self, snapshot: int) -> None:
        try:
            self._run("WITH gone AS (DELETE FROM oauthd_snapshots WHERE id = %s RETURNING id) SELECT 1", (snapshot,))
        finally:
            self._unlock()

    def close(self) -> None:
        self._link.close()
