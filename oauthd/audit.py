"""
Audit events: every issue, refusal, revocation and admin change, as a
structured log event in the C{oauthd.audit} namespace.

An event names tokens only by handle, never by value, and carries no secret;
user-supplied text is cleaned of control characters and cut short so a
hostile value cannot forge or flood log lines.
"""

from __future__ import annotations

from twisted.logger import Logger

audit_log = Logger(namespace="oauthd.audit")

_MAX_FIELD = 80


def clean(value: object) -> str:
    """
    A value safe to print in one log line.
    """
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > _MAX_FIELD:
        text = text[:_MAX_FIELD] + "..."
    return text


def audit(event: str, outcome: str, **fields: object) -> None:
    """
    Record an audit event.

    @param event: what was attempted, e.g. C{token.issue}, C{client.add}.
    @param outcome: C{ok}, C{denied} or C{failed}.
    @param fields: who and what: C{client}, C{user}, C{ip}, C{token} (a
        handle), C{reason}, C{peer_uid}; never a secret.
    """
    cleaned = {name: clean(value) for name, value in fields.items() if value not in (None, "")}
    details = " ".join(f"{name}={value}" for name, value in sorted(cleaned.items()))
    audit_log.info(
        "audit: {audit_event} {outcome} {details}",
        audit_event=event, outcome=outcome, details=details, **cleaned,
    )
