"""
Opening the event log the configuration names (the data directory's journal,
or a shared log in PostgreSQL), and leaving so as to be started again when
shared-log compaction passed this node.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger

from oauthd.config import Config
from oauthd.interfaces import IEventLog

log = Logger()


def open_event_log(config: Config, reactor: Any, pool: Any = None, metrics: Any = None) -> IEventLog:
    """
    The event log C{config} names: the data directory's journal, or a
    shared log in PostgreSQL (blocking: before the reactor runs).

    @param metrics: the daemon's L{oauthd.services.metrics.Metrics}, told
        the journal's fsync times and group commits.
    """
    from oauthd.eventlog import LOCK_NAME, FileJournal
    from oauthd.eventlog.files import lock_directory

    if not config.eventlog:
        if metrics is None:
            return FileJournal.open(config.data, reactor, pool=pool)
        journal = FileJournal.open(config.data, reactor, pool=pool, fsync_function=metrics.timed_fsync(os.fsync))
        journal.on_batch = metrics.batch
        return journal
    from oauthd.eventlog.postgresql import open_postgres_log
    from oauthd.eventlog.postgresql.node import node_id

    # The data directory (audit trail, control socket) stays one process's:
    # its lock is held until the process exits.
    lock_directory(config.data, LOCK_NAME)
    from oauthd.eventlog.errors import JournalError
    from oauthd.eventlog.postgresql.sealing import read_key_file

    if not config.eventlog_secret_key_file:
        # Signing keys and TOTP secrets travel in the log: never in the clear.
        raise JournalError("eventlog_secret_key_file is not set: a shared event log needs the key its"
                           " records are encrypted with (see the README's multi-node setup)")
    key = read_key_file(config.eventlog_secret_key_file)
    shared = open_postgres_log(config.eventlog, reactor, pool=pool, node=node_id(config.data, config.node_id),
                               retention=config.audit_keep_days * 86400.0, sweep_every=60.0, secret_key=key)
    shared.on_gap = lambda error: exit_to_restart(reactor, str(error))
    return shared


def share_rate_limits(config: Config, log: IEventLog, limiter: Any) -> None:
    """
    Charge this node's rate-limit failures on the other nodes of a shared
    log, and theirs here (L{oauthd.eventlog.postgresql.failures}): the
    limiter then keeps its buckets by a digest keyed with the nodes' secret
    key, the only form of a key that travels.
    """
    from oauthd.eventlog.postgresql.failures import key_digest
    from oauthd.eventlog.postgresql.log import PostgresLog
    from oauthd.eventlog.postgresql.sealing import read_key_file

    if not isinstance(log, PostgresLog):
        return
    limiter.digest = key_digest(read_key_file(config.eventlog_secret_key_file))
    limiter.on_charge = log.share_failure

    def charge(rule: str, digest: str, count: int) -> None:
        for _ in range(count):
            limiter.charge_shared(rule, digest)

    log.on_failures = charge


def exit_to_restart(reactor: Any, why: str) -> None:
    """
    Stop cleanly, then exit with status 1, so that the service manager
    (C{Restart=on-failure}) starts the daemon again: a node that shared-log
    compaction passed starts from the latest snapshot.
    """
    log.critical("{why}: stopping, to start again from the latest snapshot", why=why)
    reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
    reactor.stop()
