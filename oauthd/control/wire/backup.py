"""
The backup commands of the control protocol (C{oauthctl backup}).

C{StartBackup} fixes a copy of the daemon's data: it compacts the journal
and keeps that compacted file's bytes and the audit trail's files as they
are at that moment, for this connection only (at most one at a time; a
second start, C{EndBackup} or the connection's loss releases it). C{files}
is a JSON array of C{[name, size]}, the journal first; each is a file of a
data directory. C{ReadBackup} gives page C{page} of one of them:
L{BACKUP_PAGE} bytes from C{page * BACKUP_PAGE}, fewer in the last page,
none past the end.
"""

from __future__ import annotations

from twisted.protocols import amp

from oauthd.control.wire import ControlCommand

BACKUP_PAGE = 64_000
"""
The bytes one C{ReadBackup} answer carries: AMP caps a value at 65,535.
"""


class StartBackup(ControlCommand):
    response = [(b"backup", amp.Integer()), (b"files", amp.Unicode())]


class ReadBackup(ControlCommand):
    arguments = [(b"backup", amp.Integer()), (b"file", amp.Unicode()), (b"page", amp.Integer())]
    response = [(b"data", amp.String())]


class EndBackup(ControlCommand):
    arguments = [(b"backup", amp.Integer())]
