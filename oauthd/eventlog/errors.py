"""
The event log's errors: every one is a L{JournalError}, so a caller that
only needs to refuse to start (or to report) catches one class.
"""

from __future__ import annotations

__all__ = [
    "CompactionInProgress",
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalFailed",
    "JournalLocked",
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
