"""
The event log's errors: every one is a L{JournalError}, so a caller that
only needs to refuse to start (or to report) catches one class.
"""

from __future__ import annotations

__all__ = [
    "CompactionInProgress",
    "DriverMissing",
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalFailed",
    "JournalLocked",
    "LogDiverged",
    "LogGap",
    "LogUnavailable",
    "NodeInUse",
    "SchemaTooNew",
]


class JournalError(Exception):
    """
    Base class of the journal's errors.
    """


class JournalLocked(JournalError):
    """
    Another process (another oauthd instance) holds the data directory's lock.
    """


class JournalCorrupt(JournalError):
    """
    The journal file is damaged in a way that is not a torn tail, or its
    header is not one this code reads.

    @ivar path: The damaged file.
    @ivar offset: The byte offset of the damage.
    """

    def __init__(self, message: str, path: str, offset: int) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class JournalFailed(JournalError):
    """
    A write or fsync failed earlier; the journal refuses every further append
    and compaction until it is reopened.
    """


class JournalClosed(JournalError):
    """
    The journal has been closed (or is closing) and accepts no more work.
    """


class CompactionInProgress(JournalError):
    """
    L{IEventLog.compact} was called while a compaction was still running.
    """


class LogUnavailable(JournalError):
    """
    The shared log's database cannot be reached now, or the connection
    broke before the outcome of a write was known (the write may or may
    not have been committed; following the log will tell).  Unlike
    L{JournalFailed}, this passes: the log reconnects for the next write.
    """


class LogDiverged(JournalError):
    """
    The shared log no longer holds what this node applied: its positions
    were rewound, or the record at a position has another hash (a database
    restored from a backup, or failed over to a replica that lost writes).
    The node must not go on following it.
    """


class SchemaTooNew(JournalError):
    """
    The shared log's database has a schema newer than this oauthd knows.
    """


class DriverMissing(JournalError):
    """
    The PostgreSQL driver (psycopg) is not installed.
    """


class NodeInUse(JournalError):
    """
    Another live node of the shared log has this node's id.
    """


class LogGap(JournalError):
    """
    The shared log no longer holds the records after this node's cursor:
    compaction dropped them while the node was behind (a snapshot after
    them holds their effect).
    """
