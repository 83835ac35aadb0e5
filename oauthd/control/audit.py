"""
The responders to C{oauthctl audit}: reading the audit trail a page at a
time, and verifying its chain from where the journal says it begins
(L{oauthd.state.audit_anchor}). The reading itself runs off the reactor
(L{oauthd.interfaces.IAuditReader}); here the arguments are checked, so a
bad one is answered with what is wrong with it.
"""

from __future__ import annotations

import math
import re

from oauthd.control import wire
from oauthd.control.paging import page_limit
from oauthd.control.session import Responders
from oauthd.control.wire.audit import EVENT_KINDS, ReadAudit, VerifyAudit
from oauthd.interfaces import AuditQuery, IAuditReader
from oauthd.protocol.errors import InvalidValue

_EVENT = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?")
_NODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def audit_query(
    since: float | None, until: float | None, event: str | None, client: str | None, user: str | None,
    node: str | None = None,
) -> AuditQuery:
    """
    @raise InvalidValue: naming the argument that is wrong, and why.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InvalidValue(f"{name} must be a time (POSIX seconds, 0 or more)")
    if since is not None and until is not None and since > until:
        raise InvalidValue("since is after until: no event can match")
    event = event or ""
    if event and not (len(event) <= 80 and _EVENT.fullmatch(event)):
        raise InvalidValue("event must be an event name (token.issue) or a kind of event (token or token.*)")
    if event and event.split(".")[0] not in EVENT_KINDS:
        raise InvalidValue(f"unknown event {event}: event names begin with one of {', '.join(EVENT_KINDS)}")
    if node and not _NODE.fullmatch(node):
        raise InvalidValue("node must be a node id (up to 64 letters, digits, '.', '_' and '-')")
    return AuditQuery(since, until, event, client or "", user or "", node or "")


class AuditResponders(Responders):
    """
    Reading and verifying the audit trail.
    """

    def _reader(self) -> IAuditReader:
        reader = self.session.audit_reader
        if reader is None:
            raise wire.NotFound("this daemon keeps no audit trail to read")
        return reader

    @ReadAudit.responder
    async def read_audit(
        self, since: float | None = None, until: float | None = None, event: str | None = None,
        client: str | None = None, user: str | None = None, cursor: str | None = None,
        limit: int | None = None, follow: bool | None = None, node: str | None = None,
    ) -> dict[str, object]:
        query = audit_query(since, until, event, client, user, node)
        rows = page_limit(limit)
        reader = self._reader()
        session = self.session
        if session.reading_audit:
            # One page at a time per connection: what it holds stays bounded.
            raise wire.Busy("this connection is already reading the audit trail")
        session.reading_audit = True
        try:
            found, next_cursor = await session.until_disconnected(
                reader.read(query, cursor or "", rows, bool(follow)))
        except ValueError as e:
            raise InvalidValue(str(e)) from None
        finally:
            session.reading_audit = False
        return {"rows": "[" + ",".join(found) + "]", "cursor": next_cursor}

    @VerifyAudit.responder
    async def verify_audit(self) -> dict[str, object]:
        reader = self._reader()
        seq, previous = self.state.audit_anchor.of(reader.node)
        found = await reader.verify((seq, previous))
        outcome = "failed" if found["file"] else "ok"
        self.session.audit("audit.verify", outcome, lines=found["lines"], file=found["file"],
                           line=found["line"] or "")
        return {
            "lines": found["lines"], "last_seq": found["last_seq"], "file": found["file"],
            "line": found["line"], "reason": found["reason"], "anchor_seq": seq,
        }
