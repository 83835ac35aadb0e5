"""
Opening the shared log: its schema made or upgraded, this node's id
claimed, its key checked, the latest snapshot and the log after it read;
then its threads started.
"""

from __future__ import annotations

import uuid

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from oauthd.eventlog.format import HEADER_SIZE, RECORD_OVERHEAD
from oauthd.eventlog.postgresql.connection import redact
from oauthd.eventlog.postgresql.database import Reader, Writer
from oauthd.eventlog.postgresql.log import PAGE, PostgresLog
from oauthd.eventlog.postgresql.schema import ensure_schema
from oauthd.eventlog.postgresql.sealing import Sealer
from oauthd.eventlog.postgresql.snapshots import Snapshotter
from oauthd.eventlog.writer_pool import WriterPool

__all__ = ["open_log"]

_log = Logger()


def open_log(
    uri: str,
    reactor: IReactorFromThreads,
    *,
    node: str | None = None,
    pool: ThreadPool | None = None,
    listen: bool = True,
    poll: float = 1.0,
    page: int = PAGE,
    partition_size: int | None = None,
    touch_every: float = 1.0,
    retention: float = 0.0,
    sweep_every: float | None = None,
    clock: IReactorTime | None = None,
    secret_key: bytes | None = None,
) -> PostgresLog:
    """
    Open the shared log at C{uri}: create or upgrade its schema, read
    the latest snapshot and the log after it (blocking: call it before
    the reactor runs).

    @param node: this node's id (by default a new one).
    @param pool: runs every blocking job instead of the log's own
        threads (tests pass one that runs jobs inline).
    @param listen: whether to start the listener thread (without it,
        the log is read after its own appends and on L{sync} only).
    @param poll: the listener's wait, in seconds, before it wakes the
        reader anyway.
    @param partition_size: positions per partition of a new log.
    @param touch_every: seconds between updates of this node's row (its
        applied position, its heartbeat) in the nodes table.
    @param retention: seconds of records compaction keeps whatever the
        snapshots (the audit retention).
    @param sweep_every: seconds between sweeps of expired claims (one
        node at a time), or C{None} for none but L{sweep_claims}.
    @param clock: tells L{last_contact} and the claims' expiry (by
        default C{reactor}, if it tells the time).
    @param secret_key: seals every payload and snapshot chunk the log
        keeps (L{oauthd.eventlog.postgresql.sealing}); C{None} for none.
    @raise LogUnavailable: the database cannot be reached.
    @raise SchemaTooNew: its schema is newer than this oauthd knows.
    @raise LogDiverged: the log's hash chain is broken.
    @raise NodeInUse: a live node has the id C{node}.
    @raise KeyMismatch: the log was written with another key (or none).
    """
    node = node or uuid.uuid4().hex
    clock = clock or (reactor if IReactorTime.providedBy(reactor) else Clock())
    sealer = Sealer(secret_key)
    writer = Writer.to(uri, f"oauthd {node} writer", sealer)
    ensure_schema(writer.connection(), partition_size)
    reader = Reader.to(uri, f"oauthd {node} reader", node, page, touch_every, sealer)
    loaded = reader.load()
    size = HEADER_SIZE + sum(RECORD_OVERHEAD + len(p) for p in loaded.payloads)
    pools = {role: WriterPool(reactor, f"oauthd-pg-{role}", pool) for role in ("writer", "reader", "snapshot")}
    for writer_pool in pools.values():
        writer_pool.start()
    log = PostgresLog(
        uri=uri, node=node, reactor=reactor, writer=writer, reader=reader,
        snapshotter=Snapshotter.to(uri, f"oauthd {node} snapshot", node, sealer), pools=pools,
        loaded=loaded.payloads, snapshot_records=loaded.snapshot_records, cursor=loaded.position,
        cursor_hash=loaded.last_hash,
        records=len(loaded.payloads), bytes=size, retention=retention, acked=loaded.position,
        clock=clock, last_contact=clock.seconds(),
    )
    _log.info("event log: {uri} at position {position}, node {node}",
              uri=redact(uri), position=loaded.position, node=node)
    log.start(poll if listen else None, sweep_every)
    return log
