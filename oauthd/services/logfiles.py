"""
Reopening the log file twistd writes to (C{--logfile}; the access log goes
there too), so that a log moved aside by logrotate is written anew rather
than in the moved file. Under systemd the log goes to the journal through
standard output and there is nothing to reopen.

twistd does not say which file it opened: its observer is found among the
global publisher's, as the file-like object it writes to, if that is one of
Twisted's log files (which know their path and how to reopen it).
"""

from __future__ import annotations

from twisted.logger import LogPublisher, globalLogPublisher
from twisted.python.logfile import BaseLogFile


def reopen_log_files(publisher: LogPublisher = globalLogPublisher) -> list[str]:
    """
    Reopen every log file C{publisher}'s observers write to.

    @return: their paths.
    """
    reopened = []
    for observer in list(getattr(publisher, "_observers", ())):
        out = getattr(observer, "_outFile", None)
        if isinstance(out, BaseLogFile):
            out.reopen()
            reopened.append(out.path)
    return reopened
