"""
The control protocol's C{Status} (C{oauthctl status}): the daemon's
version, uptime and counts, its journal's size, and where it is in its
event log (on a shared log, its node id and lag; a digest of its state at
its position); and C{Compact} (C{oauthctl compact}).
"""

from __future__ import annotations

from twisted.protocols import amp

from oauthd.control.wire import ControlCommand


class Status(ControlCommand):
    response = [
        (b"version", amp.Unicode()),
        (b"uptime", amp.Float()),
        (b"clients", amp.Integer()),
        (b"users", amp.Integer()),
        (b"tokens", amp.Integer()),
        (b"journal_records", amp.Integer()),
        (b"journal_bytes", amp.Integer()),
        (b"live_records", amp.Integer()),
        (b"node", amp.Unicode()),
        (b"position", amp.Integer()),
        (b"lag", amp.Float(optional=True)),
        (b"state_digest", amp.Unicode()),
    ]


class Compact(ControlCommand):
    response = [
        (b"records_before", amp.Integer()),
        (b"records_after", amp.Integer()),
        (b"bytes_before", amp.Integer()),
        (b"bytes_after", amp.Integer()),
    ]
