"""
Reading and verifying the audit trail for C{oauthctl audit}, off the reactor
thread, a bounded page at a time.

A reading's place is a cursor C{FIRST.OFFSET.STOP}: the file whose first
line is sequence number C{FIRST} (rotating a file renames it, C{audit.log}
to C{audit.log.FIRST}, and keeps its bytes, so the place survives
rotation), the byte offset of the next line in it, and the sequence number
after which the reading ends (the last line written when it began; 0 for a
reading that follows the trail). Each page reads at most L{SCAN_BYTES} of
the files, so a filter that matches little takes many quick pages rather
than one long one; the daemon holds no more than one page per connection
and reads the next only when asked, so a reader that falls behind costs it
nothing: the trail on disk is the buffer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from typing import IO, Any, Protocol, TypeVar

from attrs import frozen
from zope.interface import implementer

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from oauthd.eventlog.files import open_to_read
from oauthd.interfaces import AuditQuery, IAuditReader
from oauthd.services.audit_files import (
    TRAIL_NAME,
    anchor_after,
    last_line,
    leading_seq,
    rotated_files,
    rotated_name,
    seq_of,
    split_line,
    trail_files,
    verify_trail,
)

T = TypeVar("T")

SCAN_BYTES = 4 << 20
"""
The most bytes of trail files one page reads.
"""

FOLLOW_WAIT = 30.0
"""
How long a following reading at the end of the trail waits for new events
before it answers with none (and is asked again).
"""

READERS = 2
"""
Readings and verifications that run at once; more wait their turn.
"""

Position = tuple[int, int, int]


@frozen
class Page:
    rows: list[str]
    position: Position
    at_end: bool


_encode = json.JSONEncoder(separators=(",", ":")).encode


def format_cursor(position: Position) -> str:
    return ".".join(str(n) for n in position)


def parse_cursor(cursor: str) -> Position:
    """
    @raise ValueError: if C{cursor} is not one this reader gives.
    """
    parts = cursor.split(".")
    if len(cursor) > 64 or len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError("unknown cursor; start the reading again")
    first, offset, stop = (int(p) for p in parts)
    return first, offset, stop


def matches(record: dict[str, Any], query: AuditQuery, local: str = "") -> bool:
    """
    Whether the trail's C{record} is one C{query} wants; a line without a
    node is the C{local} node's.
    """
    if query.node and record.get("node", local) != query.node:
        return False
    time = record.get("time")
    if query.since is not None and not (isinstance(time, int) and time >= query.since):
        return False
    if query.until is not None and not (isinstance(time, int) and time <= query.until):
        return False
    if query.event:
        event = str(record.get("event", ""))
        if _by_kind(query.event):
            if not event.startswith(query.event.removesuffix(".*") + "."):
                return False
        elif event != query.event:
            return False
    if query.client and query.client not in (record.get("client"), record.get("client_id")):
        return False
    return not query.user or record.get("user") == query.user


def _by_kind(event: str) -> bool:
    """
    Whether C{--event} names a kind of event (C{token}, C{user.2fa.*}) rather
    than one event (C{token.issue}).
    """
    return event.endswith(".*") or "." not in event


def _first_seq(f: IO[bytes]) -> int | None:
    f.seek(0)
    line = f.readline(65536)
    if not line.endswith(b"\n"):
        return None
    try:
        return seq_of(line[:-1])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _open(path: str) -> IO[bytes] | None:
    try:
        return os.fdopen(open_to_read(path), "rb")
    except FileNotFoundError:
        return None


def _active_first(directory: str) -> int | None:
    f = _open(os.path.join(directory, TRAIL_NAME))
    if f is None:
        return None
    with f:
        return _first_seq(f)


def _rotated_firsts(directory: str) -> list[int]:
    return [int(name[len(TRAIL_NAME) + 1:]) for name in rotated_files(directory)]


def _open_at(directory: str, first: int) -> tuple[IO[bytes], bool] | None:
    """
    The file whose first line is C{first}, and whether it is a rotated one
    (the active file may be renamed meanwhile: then look again).
    """
    for _ in range(2):
        rotated = _open(os.path.join(directory, rotated_name(first)))
        if rotated is not None:
            return rotated, True
        active = _open(os.path.join(directory, TRAIL_NAME))
        if active is None:
            return None
        if _first_seq(active) == first:
            return active, False
        active.close()
    return None


def _next_first(directory: str, first: int) -> int | None:
    """
    The first sequence number of the file after the one that begins at
    C{first}, if it has begun.
    """
    later = _rotated_firsts(directory)
    active = _active_first(directory)
    later += _rotated_firsts(directory)  # renamed while the active file was read
    if active is not None:
        later.append(active)
    later = [n for n in later if n > first]
    return min(later) if later else None


def start_of(directory: str) -> tuple[int, int]:
    """
    Where the trail begins: its oldest file, at offset 0.
    """
    firsts = _rotated_firsts(directory)
    active = _active_first(directory)
    return (min(firsts) if firsts else active or 1), 0


def end_of(directory: str, written: int) -> tuple[int, int]:
    """
    Where the line after C{written} is (or will be): after the active file's
    last line made durable, or at the start of the file that follows the
    last rotated one.
    """
    f = _open(os.path.join(directory, TRAIL_NAME))
    if f is not None:
        with f:
            first = _first_seq(f)
            if first is not None:
                end = last_line(f.fileno())[1]
                # Lines being written now (after written) are still to come.
                f.seek(max(0, end - 65536))
                for line in reversed(f.read(end - f.tell()).splitlines(keepends=True)[1:]):
                    try:
                        if seq_of(line.rstrip(b"\n")) <= written:
                            break
                    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                        break
                    end -= len(line)
                return first, end
    names = rotated_files(directory)
    after = anchor_after(os.path.join(directory, names[-1])) if names else None
    return (after[0] if after else 1), 0


def _last_time(f: IO[bytes]) -> int | None:
    last, _ = last_line(f.fileno())
    try:
        time = json.loads(split_line(last)[0])["time"] if last else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return time if isinstance(time, int) else None


def _needles(query: AuditQuery, local: str = "") -> list[list[bytes]]:
    """
    Text a line the query wants must hold: one of each list (as the trail
    writes its JSON), so most lines it does not want are passed over
    without being parsed.
    """
    needles = []
    if query.event:
        kind = query.event.removesuffix(".*")
        event = _encode(kind + ".")[:-1] if _by_kind(query.event) else _encode(kind)
        needles.append([b'"event":' + event.encode()])
    if query.client:
        value = _encode(query.client).encode()
        needles.append([b'"client":' + value, b'"client_id":' + value])
    if query.user:
        needles.append([b'"user":' + _encode(query.user).encode()])
    if query.node and query.node != local:
        needles.append([b'"node":' + _encode(query.node).encode()])
    return needles


def _record(line: bytes, needles: list[list[bytes]]) -> tuple[dict[str, Any], bytes] | None:
    """
    The event on C{line} and its text without the chain value, if it may be
    one the query wants; C{None} for a damaged line (C{oauthctl audit
    verify} reports it).
    """
    if not all(any(n in line for n in alternatives) for alternatives in needles):
        return None
    try:
        body = split_line(line[:-1])[0]
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return (record, body) if isinstance(record, dict) else None


def read_page(
    directory: str, query: AuditQuery, position: Position, wanted: int, written: int,
    max_bytes: int, scan_bytes: int = SCAN_BYTES, local: str = "",
) -> Page:
    """
    The events C{query} wants from C{position} on: up to C{wanted} of them
    and C{max_bytes} of JSON (an array of them), reading at most
    C{scan_bytes}, and never past the line C{written} (a line being written
    now) nor past the reading's stop. Lines without a node are C{local}'s.

    @raise ValueError: if C{position} is not at the start of a line.
    """
    first, offset, stop = position
    last = min(stop, written) if stop else written
    needles = _needles(query, local)
    rows: list[str] = []
    size = 2
    scanned = 0
    while True:
        opened = _open_at(directory, first)
        if opened is None:
            oldest = start_of(directory)[0]
            if first < oldest:
                # Retention removed the file the reading was in.
                first, offset = oldest, 0
                continue
            return Page(rows, (first, offset, stop), True)
        f, rotated = opened
        with f:
            f.seek(max(offset - 1, 0))
            if offset and f.read(1) != b"\n":
                raise ValueError("unknown cursor; start the reading again")
            skip = offset == 0 and rotated and query.since is not None and (
                (_last_time(f) or query.since) < query.since)
            f.seek(offset)
            for line in ([] if skip else f):
                if not line.endswith(b"\n"):
                    return Page(rows, (first, offset, stop), True)
                if leading_seq(line) > last:
                    return Page(rows, (first, offset, stop), True)
                found = _record(line, needles)
                if found is not None and matches(found[0], query, local):
                    record, body = found
                    # ASCII, so its length is its size on the wire (the
                    # daemon writes ASCII; a line edited by hand may not be).
                    text = body.decode("ascii") if body.isascii() else _encode(record)
                    if size + len(text) + 1 > max_bytes and rows:
                        return Page(rows, (first, offset, stop), False)
                    if size + len(text) + 1 <= max_bytes:
                        # (A line too long for any page, edited in by hand,
                        # is left out.)
                        rows.append(text)
                        size += len(text) + 1
                offset += len(line)
                scanned += len(line)
                if len(rows) >= wanted or scanned >= scan_bytes:
                    return Page(rows, (first, offset, stop), False)
            if not rotated:
                return Page(rows, (first, offset, stop), True)
        following = _next_first(directory, first)
        if following is None:
            return Page(rows, (first, offset, stop), True)
        first, offset = following, 0


def verify(directory: str, anchor: tuple[int, str], written: int, written_chain: str = "") -> dict[str, object]:
    """
    L{verify_trail} with the journal's anchor, as C{oauthctl audit verify}
    reports it; checked again if the files changed meanwhile (a rotation
    renames the active file while it is read).
    """
    for _ in range(3):
        files = trail_files(directory)
        found = verify_trail(directory, anchor, written, written_chain)
        if found.broken is None or trail_files(directory) == files:
            break
    path, line = found.broken or ("", 0)
    return {
        "lines": found.lines, "last_seq": found.last_seq, "head": found.head,
        "file": path, "line": line, "reason": found.reason,
    }


class _Trail(Protocol):
    """
    What the reader needs of the trail (L{oauthd.services.audit.AuditTrail}).
    """

    directory: str
    written_seq: int
    written_chain: str

    def next_write(self) -> Deferred[None]: ...


@implementer(IAuditReader)
class TrailReader:
    """
    The daemon's reader of its own trail, for the control socket.

    @param run: runs a function off the reactor thread (a thread pool).
    @param node: this node's id over a shared event log, else C{""}.
    """

    def __init__(
        self, trail: _Trail, run: Callable[[Callable[[], Any]], Deferred[Any]], clock: IReactorTime,
        max_bytes: int, scan_bytes: int = SCAN_BYTES, node: str = "",
    ) -> None:
        self.node = node
        self._trail = trail
        self._run = run
        self._clock = clock
        self._max_bytes = max_bytes
        self._scan_bytes = scan_bytes
        self._turns = DeferredSemaphore(READERS)

    def _off_reactor(self, work: Callable[[int], T]) -> Deferred[T]:
        """
        Run C{work} off the reactor when its turn comes, with the sequence
        number of the last line made durable by then.
        """
        return self._turns.run(lambda: self._run(partial(work, self._trail.written_seq)))

    def read(self, query: AuditQuery, cursor: str, rows: int, follow: bool) -> Deferred[tuple[list[str], str]]:
        directory = self._trail.directory
        stop = 0 if follow else self._trail.written_seq
        given = parse_cursor(cursor) if cursor else None

        def page(position: Position | None, written: int) -> Page:
            if position is None:
                begin = end_of(directory, written) if follow and query.since is None else start_of(directory)
                position = (*begin, stop)
            return read_page(directory, query, position, rows, written, self._max_bytes, self._scan_bytes,
                             local=self.node)

        def answer(found: Page) -> Any:
            if follow and found.at_end and not found.rows:
                return self._wait().addCallback(
                    lambda _: self._off_reactor(partial(page, found.position))).addCallback(reply)
            return reply(found)

        def reply(found: Page) -> tuple[list[str], str]:
            ended = found.at_end and not follow
            return found.rows, "" if ended else format_cursor(found.position)

        return self._off_reactor(partial(page, given)).addCallback(answer)

    def _wait(self) -> Deferred[None]:
        """
        Fires when new lines are durable, or after L{FOLLOW_WAIT}.
        """
        written = self._trail.next_write()
        timer = self._clock.callLater(FOLLOW_WAIT, written.cancel)

        def done(result: object) -> None:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                result.trap(CancelledError)

        return written.addBoth(done)

    def verify(self, anchor: tuple[int, str]) -> Deferred[dict[str, object]]:
        trail = self._trail
        # The seq and its chain value as they are when the turn comes.
        return self._turns.run(lambda: self._run(partial(
            verify, trail.directory, anchor, trail.written_seq, trail.written_chain)))
