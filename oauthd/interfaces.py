"""
The seams between oauthd's layers and the services beside them: what the
state layer needs of an event log, what the protocol layer needs of a
password hasher, and what the committer needs of an audit sink. Each has a
real implementation and a fake (L{oauthd.testing}); nothing here imports
another oauthd module.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from attrs import frozen
from zope.interface import Attribute, Interface

from twisted.internet.defer import Deferred

MAX_PASSWORD_BYTES = 72
"""
bcrypt's input limit; longer passwords are refused, never silently truncated.
"""


class PasswordTooLong(ValueError):
    """
    The password is over L{MAX_PASSWORD_BYTES} bytes of UTF-8.
    """


WORST_RANK = 2
"""
The highest rank of a password check (L{IPasswordHasher.check}).
"""


class HasherBusy(Exception):
    """
    Too many password checks are queued; the caller should answer
    C{temporarily_unavailable} rather than queue without bound.
    """


class Expect(enum.Enum):
    """
    What a L{Claim} requires of its key's current value, besides a value.
    """

    ABSENT = "absent"
    """
    The key must not be held yet (a code's single use, a new user name).
    """
    ANY = "any"
    """
    Whatever the key holds, it is set (a refresh family's revocation).
    """


@frozen
class Claim:
    """
    A compare-and-set that goes with an append: the append happens only if
    every one of its claims holds, and then sets them all, atomically, for
    every node sharing the log (see L{IEventLog.append}).

    @ivar key: what is claimed, e.g. C{"code:<digest>"}, C{"grant:<id>"}.
    @ivar value: what the key holds afterwards (e.g. the digest of a
        grant's current refresh token, or C{"revoked"}).
    @ivar expect: the value the key must hold now, or L{Expect.ABSENT} (it
        must not be held), or L{Expect.ANY}.
    @ivar expires: when the claim may be swept (seconds since the epoch),
        or C{None} for never; it is held until swept.
    """

    key: str
    value: str
    expect: str | Expect = Expect.ABSENT
    expires: float | None = None


class ClaimConflict(Exception):
    """
    An append's claim did not hold (its key was held already, or held
    another value); nothing of the append was made.

    @ivar key: the first claim that did not hold.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"claim {key!r} does not hold")
        self.key = key


Deliver = Callable[[int, bytes], None]
"""
What L{IEventLog.follow} calls with each committed record: its position and
its payload.
"""


class IEventLog(Interface):
    """
    An ordered, durable log of opaque payloads.

    All methods are called on the reactor thread.  Payloads are C{bytes} of
    at most the log's payload cap (the file journal's C{MAX_PAYLOAD}, 1 MiB) bytes; the log never interprets them.
    """

    record_count = Attribute(
        "C{int}: the number of records durably in the log (acknowledged"
        " appends plus the records present at open; after a compaction, the"
        " records of the new file)."
    )
    byte_count = Attribute(
        "C{int}: the size in bytes of the log's durable contents, counted as"
        " the file format lays them out (L{HEADER_SIZE} plus"
        " L{RECORD_OVERHEAD} + len(payload) per record)."
    )

    snapshot_records = Attribute(
        "C{int | None}: for a log several nodes share, how many of the"
        " payloads L{replay} gives are a snapshot's (a node's state as it"
        " was; the rest are the log after it, which a starting node checks"
        " record by record as the running nodes did); C{None} for a log one"
        " process writes, whose every record was applied as it stands."
    )

    position = Attribute(
        "C{int}: the log position of the last record replayed or delivered"
        " to the follower (positions are dense and increase by one per"
        " record; a single-process log numbers the records it holds at open"
        " from 1, and counts on from there for its lifetime)."
    )

    def append(payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        """
        Append C{payloads}, in order, after everything appended before.

        If C{claims} are given, the payloads are appended only if every
        claim holds, and the claims are set in the same atomic step;
        otherwise nothing is appended and nothing claimed.

        @raise ValueError: if a payload is longer than the log's payload cap (the file journal's C{MAX_PAYLOAD}, 1 MiB) (nothing
            is appended then).
        @raise TypeError: if a payload is not C{bytes}.
        @return: fires with C{None} once the payloads are durable (written
            and fsync'd).  Appends are durable, and fire, in call order.  It
            errbacks with L{JournalFailed} if this or any earlier write
            failed, and with L{JournalClosed} after L{close}; with
            L{ClaimConflict} if a claim did not hold.
        """

    def follow(deliver: Deliver) -> None:
        """
        From now on, call C{deliver(position, payload)} on the reactor thread
        for every record committed to the log after those L{replay} gives,
        every writer's own included, once each, in log order.  A record
        appended here is delivered before its L{append} fires.  One follower
        per log.
        """

    def sync() -> Deferred[None]:
        """
        Fires once every record committed before the call has been delivered
        to the follower (at once when there is nothing else to wait for).
        Fails with the log's failure (L{LogDiverged}, say) if it cannot get
        there.
        """

    def sweep_claims(before: float) -> Deferred[int]:
        """
        Forget the claims that expired before C{before} (seconds since the
        epoch).

        @return: fires with how many were forgotten.
        """

    def replay() -> Iterator[bytes]:
        """
        The payloads present when the log was opened, oldest first.

        Meant to be consumed once, at start-up, before the reactor runs (it
        may block on reads).  Do not call it after L{compact} (the file
        journal raises L{RuntimeError} then).
        """

    def compact(snapshot: Iterable[bytes]) -> Deferred[None]:
        """
        Replace the log's contents with C{snapshot}, the live state.

        The new log holds exactly the payloads of C{snapshot}, followed by
        every payload whose append had not been acknowledged when C{compact}
        was called (its Deferred had not fired) and every payload appended
        after, in append order.  The snapshot therefore has to cover only the
        appends acknowledged before the call; it may also reflect later ones
        (record application is idempotent).  Appends keep being accepted and
        acknowledged during compaction.  C{snapshot} is consumed lazily on the
        reactor thread, a small slice per reactor turn.

        @return: fires with C{None} when the new log is durably in place.  If
            the compaction fails (the snapshot raised or held a bad payload,
            or writing the new log failed before it replaced the old one), it
            errbacks with that error and the old log stays in use with
            nothing lost.  If the new log replaced the old one but that
            replacement could not be made durable (the directory fsync
            failed), the log enters the failed state and this, and the
            appends it carried, errback with L{JournalFailed}.  Errbacks with
            L{CompactionInProgress} if a compaction is already running.
        """

    def close() -> Deferred[None]:
        """
        Flush pending appends, finish a running compaction and release the
        log (for a file journal: close the file and drop the lock).

        @return: fires with C{None} once everything is released.
        """


class IPasswordHasher(Interface):
    """
    Hashes and checks passwords people choose, off the reactor thread.
    """

    def hash(password: str) -> Deferred[str]:
        """
        A new hash of C{password}.

        @return: fails with L{PasswordTooLong} over L{MAX_PASSWORD_BYTES},
            with L{HasherBusy} when too many are queued.
        """

    def check(password: str, hashed: str, keys: Sequence[str] = (), rank: int = 0) -> Deferred[bool]:
        """
        Whether C{password} matches C{hashed}; C{False} for an overlong
        password or an empty or malformed hash, after as long as a real
        check of a stored hash takes.

        @param keys: who asks (an address, a username): no one key may hold
            more than a bounded share of the queue.
        @param rank: checks of a lower rank are run first, and may push one
            of a higher rank out of a full queue (0: a caller known to be
            good, up to L{WORST_RANK}: one that has failed lately).
        @return: fails with L{HasherBusy} when too many are queued.
        """

    def outdated(hashed: str) -> bool:
        """
        Whether C{hashed} was made at another cost than new hashes are.
        """


class AuditFailing(Exception):
    """
    The audit sink cannot make events durable now (its writes fail); a
    change is refused rather than left unaudited.
    """


class AuditedEvent(Protocol):
    """
    An audit event as a sink takes it (L{oauthd.state.decision.AuditEvent}).
    """

    @property
    def event(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, str]: ...


class IAuditSink(Interface):
    """
    Where audit events go: the daemon's hash-chained trail, or the log.
    """

    failure = Attribute(
        "C{str} or C{None}: why the sink cannot make events durable now"
        " (for health checks, and to refuse changes meanwhile)."
    )

    def record_change(event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]:
        """
        Record one event that describes a change of state.

        @return: fires once the event is durable; fails with L{AuditFailing}
            if it cannot be made durable now (it is kept, and written once
            the sink recovers).
        """

    def record_changes(events: Sequence[AuditedEvent]) -> Deferred[None] | None:
        """
        Record the events of one change, in order, each as L{record_change}
        does.

        @return: C{None} if they are durable already (a sink that writes
            at once); else fires once they are durable, or fails with
            L{AuditFailing} as L{record_change} does.
        """

    def __call__(event: str, outcome: str, fields: Mapping[str, str]) -> None:
        """
        Record one event.

        @param event: what was attempted, e.g. C{token.issue}.
        @param outcome: C{ok}, C{denied}, C{failed} or C{abandoned} (and,
            over a shared log, C{superseded}: a change voided at its log
            position, L{oauthd.state.audit_relay}).
        @param fields: who and what, cleaned (printable, short); never a
            secret.
        """


@frozen
class AuditQuery:
    """
    Which audit events a reader wants (each unset one matches all).

    @ivar since: from this POSIX time on.
    @ivar until: up to this POSIX time.
    @ivar event: an event name (C{token.issue}), or a kind of event
        (C{token} or C{token.*}).
    @ivar client: a client id.
    @ivar user: a user name.
    @ivar node: the id of the node that made the change, over a shared event
        log (the reading node's own lines without one count as its own).
    """

    since: float | None = None
    until: float | None = None
    event: str = ""
    client: str = ""
    user: str = ""
    node: str = ""


class IAuditReader(Interface):
    """
    Reads and verifies the audit trail, off the reactor thread.
    """

    node = Attribute(
        "C{str}: the id of the node whose trail it reads, over a shared event log; else C{\"\"}"
    )

    def read(query: AuditQuery, cursor: str, rows: int, follow: bool) -> Deferred[tuple[list[str], str]]:
        """
        One page of the events C{query} wants, oldest first: from C{cursor},
        else from the start (with C{follow} and no C{since}: from now on).

        @param rows: the most events the page holds.
        @param follow: at the end of the trail, wait a while for new events
            rather than end the reading.
        @return: fires with the events (each a JSON object's text, without
            its chain value) and the cursor of the next page (C{""} once a
            reading that does not follow has reached the end); fails with
            L{ValueError} for a cursor it did not give.
        """

    def verify(anchor: tuple[int, str]) -> Deferred[dict[str, object]]:
        """
        Check the whole trail's chain, from where the journal says it begins
        (C{anchor}: a sequence number and the chain value it continues) to
        the last line written.

        @return: fires with C{lines} verified, C{last_seq}, C{head}, and
            for the first line that does not verify its C{file}, C{line}
            (from 1) and C{reason} (C{""}, 0, C{""} when the chain holds).
        """


class IFollowedLog(Interface):
    """
    An event log this node follows over the network (shared with other
    nodes): how fresh the state it serves is.
    """

    def lag() -> float | None:
        """
        Seconds since the node last read the log up to its head of the time
        (the state it serves is at most that old); C{None} while nothing
        follows the log.
        """

    reachable = Attribute("C{bool}: whether the node's last reads and writes reached the log")
    failure = Attribute(
        "C{str} or C{None}: why the node stopped following the log for good"
    )
