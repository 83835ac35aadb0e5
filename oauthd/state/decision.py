"""
What the protocol layer decides, for the committer to carry out: the records
that change the state, the answer to give once they are durable (or the
refusal to raise then), and the audit events that record it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

from attrs import field, frozen

from oauthd.interfaces import Claim
from oauthd.state.records import Record

T = TypeVar("T")

_MAX_FIELD = 80


def clean(value: object) -> str:
    """
    A value safe to print in one log line: printable, at most 80 characters.
    """
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > _MAX_FIELD:
        text = text[:_MAX_FIELD] + "..."
    return text


class AuditEvent(NamedTuple):
    """
    One audit event: what was attempted, its outcome, and who and what it
    concerned (tokens by handle, never a secret), as L{audit} makes it.
    """

    event: str
    outcome: str
    fields: dict[str, str]


def audit(event: str, outcome: str, **fields: object) -> AuditEvent:
    """
    An audit event, its fields cleaned (L{clean}) and the empty ones left out.
    """
    # One made for nearly every request: a loop in here rather than a
    # converter and a comprehension (each a call), and most values, short
    # printable text already, kept as they are.
    kept: dict[str, str] = {}
    for name, value in fields.items():
        if value is None or value == "":
            continue
        kept[name] = value if type(value) is str and len(value) <= _MAX_FIELD and value.isprintable() else clean(value)
    return AuditEvent(event, outcome, kept)


@frozen
class Decision(Generic[T]):
    """
    A decision of the protocol layer.

    @ivar records: what to append (applied to memory at once, in order).
    @ivar answer: what the caller gets once the records are durable.
    @ivar audit: the events recorded once the records are durable.
    @ivar refusal: raised instead of giving C{answer}, once the records are
        durable (a refusal that changes state, such as a reused refresh
        token revoking its grant).
    @ivar context: who and what the change is for, audited with a refusal
        if the records cannot be made durable.
    @ivar still: called by the committer just before it applies the
        records, to raise the refusal if the state changed since the
        decision in a way that voids it (two registrations deciding on the
        last use of one initial access token).
    @ivar claims: what the records use up once, decided by a shared event
        log in the same append (L{oauthd.interfaces.Claim}): a new client
        id; the committer adds those the records imply (a grant's current
        refresh token, a code: L{oauthd.state.follower.implied_claims}).  A
        log kept by one process has no use for them (its memory decides at
        once).
    @ivar lost: makes what to commit instead if a shared log refuses the
        claims, or drops a record because the state changed at its position
        (a reused refresh token revokes its grant); by default the change is
        refused as not made (L{oauthd.state.follower.Superseded}).  Made only
        then, so that a log kept by one process never pays for it.
    """

    answer: T
    records: Sequence[Record] = ()
    audit: Sequence[AuditEvent] = ()
    refusal: Exception | None = None
    context: dict[str, object] = field(factory=dict)
    still: Callable[[], None] | None = None
    claims: Sequence[Claim] = ()
    lost: Callable[[], Decision[T]] | None = None
