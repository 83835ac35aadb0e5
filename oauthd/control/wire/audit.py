"""
The audit trail's commands of the control protocol (C{oauthctl audit}).

ReadAudit: one page of events, oldest first. C{since} and C{until} are POSIX
times; C{event} an event name (C{token.issue}) or a kind of event (C{token}
or C{token.*}, one of L{EVENT_KINDS}); C{client} a client id, C{user} a
user name, C{node} the node that made the change (over a shared event
log); C{limit} the most events of the page (1 to PAGE_ROWS). C{rows} is
a JSON array of the trail's lines as objects (C{seq}, C{time}, C{event},
C{outcome}, then the event's fields), without their chain values; C{cursor}
names the next page, C{""} after the last. With C{follow}, a page at the end
of the trail waits up to 30 seconds for new events, and the cursor never
ends; without a cursor and C{since} it begins at the end of the trail.

VerifyAudit: the whole hash chain, from where the journal says the trail
begins to the last line written. C{file} and C{line} (from 1) name the first
line that does not verify, with C{reason}; C{""} and 0 when the chain holds.
"""

from __future__ import annotations

from twisted.protocols import amp

from oauthd.control.wire import ControlCommand

EVENT_KINDS = (
    "2fa", "audit", "authorize", "browser", "client", "config", "control", "data", "device", "http",
    "introspect", "journal", "key", "keys", "logout", "metrics", "register", "revoke", "session",
    "token", "user", "userinfo",
)
"""
What audit event names begin with (the part before the first dot).
"""


class ReadAudit(ControlCommand):
    arguments = [
        (b"since", amp.Float(optional=True)),
        (b"until", amp.Float(optional=True)),
        (b"event", amp.Unicode(optional=True)),
        (b"client", amp.Unicode(optional=True)),
        (b"user", amp.Unicode(optional=True)),
        (b"node", amp.Unicode(optional=True)),
        (b"cursor", amp.Unicode(optional=True)),
        (b"limit", amp.Integer(optional=True)),
        (b"follow", amp.Boolean(optional=True)),
    ]
    response = [(b"rows", amp.Unicode()), (b"cursor", amp.Unicode())]


class VerifyAudit(ControlCommand):
    response = [
        (b"lines", amp.Integer()),
        (b"last_seq", amp.Integer()),
        (b"file", amp.Unicode()),
        (b"line", amp.Integer()),
        (b"reason", amp.Unicode()),
        (b"anchor_seq", amp.Integer()),
    ]
