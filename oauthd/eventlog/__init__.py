"""
The event log layer: an ordered, durable log of opaque payloads
(L{oauthd.interfaces.IEventLog}), the bottom of oauthd's layers.  It imports
nothing of oauthd but L{oauthd.interfaces}.  The layers above import the
event log from here, not from its modules; the services beside them may also
use its building blocks (L{files}, L{writer_pool}) for files of their own.

    - L{format}: the journal file format (framing, CRCs, verification);
    - L{files}: private files, the directory lock, atomic replacement;
    - L{errors}: the L{JournalError} family;
    - L{writer_pool}: the private writer thread of an object that owns a file;
    - L{journal}: L{FileJournal}, the log as one file, with group commit;
    - L{journal_file}: its blocking side, the jobs of its writer thread;
    - L{memory}: L{MemoryJournal}, the fake for tests of the layers above;
    - L{image}: a journal's durable contents as a file's bytes, for backups;
    - L{local}: claims and the follower of a log kept by one process;
    - L{chain}: the hash chain over a shared log's records;
    - L{shared}: L{MemorySharedLog}, one log shared by simulated nodes;
    - L{postgresql}: the log shared by several daemons, in PostgreSQL
      (imported on demand: it needs the optional psycopg);
    - L{repair}: offline repair of a damaged journal, and (as
      C{python -m oauthd.eventlog.repair DIR}) oauthctl's helper for it.
"""

from oauthd.eventlog.errors import (
    CompactionInProgress,
    DriverMissing,
    JournalClosed,
    JournalCorrupt,
    JournalError,
    JournalFailed,
    JournalLocked,
    LogDiverged,
    LogGap,
    LogUnavailable,
    NodeInUse,
    SchemaTooNew,
)
from oauthd.eventlog.format import (
    FORMAT_VERSION,
    HEADER_SIZE,
    JOURNAL_NAME,
    LOCK_NAME,
    MAGIC,
    MAX_PAYLOAD,
    RECORD_OVERHEAD,
    TEMP_NAME,
    check_payload,
)
from oauthd.eventlog.image import FileImage, JournalImage, data_files, journal_image
from oauthd.eventlog.journal import FileJournal
from oauthd.eventlog.memory import MemoryJournal
from oauthd.eventlog.repair import RepairReport, repair
from oauthd.eventlog.shared import MemorySharedLog, SharedLogNode

__all__ = [
    "CompactionInProgress",
    "DriverMissing",
    "FORMAT_VERSION",
    "FileImage",
    "FileJournal",
    "HEADER_SIZE",
    "JOURNAL_NAME",
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalFailed",
    "JournalImage",
    "JournalLocked",
    "LOCK_NAME",
    "LogDiverged",
    "LogGap",
    "LogUnavailable",
    "MAGIC",
    "MAX_PAYLOAD",
    "MemoryJournal",
    "MemorySharedLog",
    "NodeInUse",
    "RECORD_OVERHEAD",
    "RepairReport",
    "SchemaTooNew",
    "SharedLogNode",
    "TEMP_NAME",
    "check_payload",
    "data_files",
    "journal_image",
    "repair",
]
