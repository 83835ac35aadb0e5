"""
The audit events of a change, carried in a shared event log with the change.

    audit  {node, at, records, events}   AuditNoted   the events that describe the
                                                      records before it in its append

Over a log several nodes share, the committer appends one C{audit} record
after a decision's records, in the same append: the node that wrote it, when
(whole seconds), how many records before it belong to the same append, and
each event (name, outcome, fields: never a secret, see
L{oauthd.state.decision.AuditEvent}). It changes no state and no snapshot
holds it; each node writes its events to its own audit trail when the log
delivers it (L{oauthd.state.audit_relay}). A log one process writes never
holds one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from attrs import frozen

TAG = "audit"
PREFIX = b"audit\t"
"""
How an C{audit} record's payload begins.
"""


@frozen
class NotedEvent:
    event: str
    outcome: str
    fields: Mapping[str, str]


@frozen
class AuditNoted:
    """
    The audit events of the C{records} records before this one in its
    append, written by C{node} at C{at}.
    """

    node: str
    at: int
    records: int
    events: tuple[NotedEvent, ...]


# One encoder for every record (json.dumps with options builds one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def encode(record: AuditNoted) -> str:
    return encode_events(record.node, record.at, record.records,
                         [(e.event, e.outcome, e.fields) for e in record.events]).decode("utf-8")


def encode_events(
    node: str, at: int, records: int, events: Sequence[tuple[str, str, Mapping[str, str]]],
) -> bytes:
    """
    The payload of an C{audit} record of C{events} (name, outcome, fields).
    """
    body = {"at": at, "events": events, "node": node, "records": records}
    # JSON escapes a tab in a value: the record stays one field.
    return (TAG + "\t" + _JSON.encode(body)).encode("utf-8")


def decode(fields: list[str]) -> AuditNoted:
    """
    @raise ValueError: if the fields are not an C{audit} record's.
    """
    if len(fields) != 2:
        raise ValueError(f"malformed {TAG} record: it has {len(fields)} fields, not 2")
    try:
        body = json.loads(fields[1])
        node, at, records = body["node"], body["at"], body["records"]
        events = tuple(_event(event) for event in body["events"])
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"malformed {TAG} record: {e}") from None
    if not (isinstance(node, str) and type(at) is int and type(records) is int and records >= 0):
        raise ValueError(f"malformed {TAG} record: its node, time or count is not one")
    return AuditNoted(node, at, records, events)


def _event(value: object) -> NotedEvent:
    if not (isinstance(value, list) and len(value) == 3):
        raise ValueError("an event is not [event, outcome, fields]")
    event, outcome, fields = value
    if not (isinstance(event, str) and isinstance(outcome, str) and isinstance(fields, dict)
            and all(isinstance(v, str) for v in fields.values())):
        raise ValueError("an event's name, outcome or fields are not text")
    return NotedEvent(event, outcome, fields)
