"""
The blocking side of the PostgreSQL log: what its threads do, each on a
connection of its own.  Nothing here touches the reactor; L{log} runs these
jobs on one-thread pools and gets their results back on the reactor thread,
except the L{Listener}, which only wakes the reactor.

Positions are handed out by the head row in the same statement as the
insert (C{oauthd_append} in C{schema/v1.sql}), so a record commits only
after every record before it: "everything after my cursor" never skips one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from attrs import define, field, frozen

from oauthd.eventlog.chain import GENESIS, link
from oauthd.eventlog.errors import LogDiverged, LogGap, LogUnavailable
from oauthd.eventlog.postgresql.link import Connection, Link
from oauthd.eventlog.postgresql.node import claim_node, take_node_lock
from oauthd.eventlog.postgresql.sealing import Sealer
from oauthd.eventlog.postgresql.snapshots import unframe
from oauthd.interfaces import Claim, ClaimConflict, Expect

__all__ = ["Appending", "Fetched", "Listener", "Loaded", "Reader", "Writer"]

NOTIFY_CHANNEL = "oauthd_log"
FAILURES_CHANNEL = "oauthd_failures"

_STOP_CHECK = 0.2


@frozen
class Appending:
    """
    One C{append()} call, as the writer sees it.
    """

    payloads: tuple[bytes, ...]
    claims: tuple[Claim, ...] = ()


def _arguments(batch: Sequence[Appending], sealer: Sealer) -> tuple[object, ...]:
    """
    The arguments of C{oauthd_append} for C{batch}: each array flattened
    over the appends, with each append's count beside it; the payloads
    sealed.
    """
    claims = [c for a in batch for c in a.claims]
    modes = [
        "absent" if c.expect is Expect.ABSENT else "any" if c.expect is Expect.ANY else "equal"
        for c in claims
    ]
    return (
        [sealer.seal(p) for a in batch for p in a.payloads], [len(a.payloads) for a in batch],
        [c.key for c in claims], [c.value for c in claims], modes,
        [c.expect if isinstance(c.expect, str) else None for c in claims],
        [c.expires for c in claims], [len(a.claims) for a in batch],
    )


@define
class Writer:
    """
    The writer thread's jobs: appends (grouped), and the wake-up after them.
    """

    _link: Link
    _sealer: Sealer = field(factory=lambda: Sealer(None))

    @classmethod
    def to(cls, uri: str, name: str, sealer: Sealer | None = None) -> Writer:
        return cls(Link(uri, name), sealer or Sealer(None))

    def connection(self) -> Connection:
        return self._link.get()

    def append(self, batch: Sequence[Appending]) -> list[int | Exception]:
        """
        Append every one of C{batch}, in order, in one statement; each is
        atomic, refused alone if a claim of it does not hold.

        @return: for each, the position of its last record (of the record
            before it, if it has none), or why it failed: L{ClaimConflict};
            or, for all of them, L{LogUnavailable} if the connection broke
            (they may or may not have been committed).
        """
        try:
            row = self._link.get().execute(
                "SELECT * FROM oauthd_append(%s::bytea[], %s::int[], %s::text[], %s::text[],"
                " %s::text[], %s::text[], %s::float8[], %s::int[])",
                _arguments(batch, self._sealer),
            ).fetchone()
        except LogUnavailable as e:
            return [e] * len(batch)
        except psycopg.Error as e:
            return [self._link.broken(e)] * len(batch)
        assert row is not None
        lasts, conflicts = row
        outcomes: list[int | Exception] = [
            ClaimConflict(conflict) if last is None else int(last)
            for last, conflict in zip(lasts, conflicts)
        ]
        if any(appending.payloads for appending, last in zip(batch, lasts) if last is not None):
            self._notify()
        return outcomes

    def probe(self) -> None:
        """
        Reconnect if need be, and check the connection works.

        @raise LogUnavailable: it does not.
        """
        try:
            self._link.get().execute("SELECT 1")
        except psycopg.Error as e:
            raise self._link.broken(e) from None

    def _notify(self) -> None:
        # After the commit, outside it: a NOTIFY inside the appending
        # transaction would serialise every commit on the notify queue.
        # Followers also poll, so a lost wake-up only delays them.
        try:
            self._link.get().execute(f"NOTIFY {NOTIFY_CHANNEL}")
        except (psycopg.Error, LogUnavailable):
            pass

    def notify_failures(self, payload: str) -> None:
        """
        Tell the other nodes of the rate-limit failures in C{payload}
        (L{oauthd.eventlog.postgresql.failures}); a lost one is forgiven.
        """
        try:
            self._link.get().execute("SELECT pg_notify(%s, %s)", (FAILURES_CHANNEL, payload))
        except (psycopg.Error, LogUnavailable):
            pass

    def close(self) -> None:
        self._link.close()


@frozen
class Fetched:
    """
    What one read of the log found.

    @ivar records: (position, payload) after the cursor, in order.
    @ivar last_hash: the hash of the last of them (the cursor's if none).
    @ivar head: the head position, if asked for.
    @ivar full: whether a whole page came back (there may be more).
    """

    records: list[tuple[int, bytes]]
    last_hash: bytes
    head: int | None
    full: bool


@frozen
class Loaded:
    """
    What a start reads: the latest complete snapshot, then the log after it.
    """

    payloads: list[bytes]
    position: int
    last_hash: bytes
    snapshot_records: int


def _diverged(cursor: int, why: str) -> LogDiverged:
    return LogDiverged(
        f"the event log no longer holds what this node applied through position {cursor}: {why}"
        " (was the database restored or failed over?); refusing to follow it"
    )


def check_gap(connection: Connection, cursor: int) -> None:
    """
    Raise L{LogGap} if the log's oldest record comes after C{cursor}'s
    next one: compaction dropped records this node has not applied.
    """
    row = connection.execute("SELECT min(pos) FROM oauthd_log").fetchone()
    low = row[0] if row is not None else None
    if low is not None and low > cursor + 1:
        raise LogGap(
            f"the event log now begins at position {low}: compaction dropped positions {cursor + 1}"
            f" to {low - 1} while this node was behind (at position {cursor}); restart it: it starts"
            " from the latest snapshot"
        )


def check_cursor(connection: Connection, cursor: int, cursor_hash: bytes) -> None:
    """
    Raise L{LogDiverged} unless the log still holds, at C{cursor}, the
    record this node applied there (its hash is C{cursor_hash}).
    """
    head = connection.execute("SELECT pos FROM oauthd_head").fetchone()
    assert head is not None
    if head[0] < cursor:
        raise _diverged(cursor, f"its head is at position {head[0]}")
    if cursor == 0:
        return
    row = connection.execute("SELECT hash FROM oauthd_log WHERE pos = %s", (cursor,)).fetchone()
    if row is not None and bytes(row[0]) != cursor_hash:
        raise _diverged(cursor, "the record there has another hash")


@define
class Reader:
    """
    The reader thread's jobs: reading the log after a cursor, the head, and
    this node's row.  Every (re)connection first checks that the log still
    holds what the node applied (L{check_cursor}).
    """

    _link: Link
    node: str
    page: int
    # Seconds between updates of the node's row (its applied position).
    touch_every: float = 1.0
    _cursor: tuple[int, bytes] = (0, GENESIS)
    _touched: float = field(default=0.0)
    # Whether this session holds the node id's lock (L{claim_node}).
    _claimed: bool = False
    _sealer: Sealer = field(factory=lambda: Sealer(None))

    @classmethod
    def to(cls, uri: str, name: str, node: str, page: int, touch_every: float = 1.0,
           sealer: Sealer | None = None) -> Reader:
        reader = cls(Link(uri, name), node, page, touch_every, sealer=sealer or Sealer(None))
        reader._link._on_connect = reader._connected
        return reader

    def _connected(self, connection: Connection) -> None:
        check_cursor(connection, *self._cursor)
        self._claimed = False

    def fetch(self, cursor: int, cursor_hash: bytes, want_head: bool) -> Fetched:
        """
        The records after C{cursor} (a page at most), their chain checked
        from C{cursor_hash}; and the head position first, if C{want_head}.

        @raise LogDiverged: the log does not continue what the node applied.
        @raise LogUnavailable: the database cannot be reached.
        """
        self._cursor = (cursor, cursor_hash)
        try:
            return self._fetch(self._link.get(), cursor, cursor_hash, want_head)
        except psycopg.OperationalError as e:
            # The connection broke (the server restarted, say): one more
            # try, on a new one, checked at the cursor first.
            self._link.broken(e)
        try:
            return self._fetch(self._link.get(), cursor, cursor_hash, want_head)
        except psycopg.Error as e:
            raise self._link.broken(e) from None

    def _fetch(self, connection: Connection, cursor: int, cursor_hash: bytes, want_head: bool) -> Fetched:
        head = None
        if want_head:
            row = connection.execute("SELECT pos FROM oauthd_head").fetchone()
            assert row is not None
            head = int(row[0])
            if head < cursor:
                raise _diverged(cursor, f"its head is at position {head}")
        rows = connection.execute(
            "SELECT pos, payload, hash FROM oauthd_log WHERE pos > %s ORDER BY pos LIMIT %s",
            (cursor, self.page),
        ).fetchall()
        records: list[tuple[int, bytes]] = []
        previous = cursor_hash
        for pos, payload, stored in rows:
            payload = bytes(payload)
            if pos != cursor + len(records) + 1:
                check_gap(connection, cursor + len(records))
                raise _diverged(cursor, f"position {cursor + len(records) + 1} is missing")
            previous = link(previous, pos, payload)
            if previous != bytes(stored):
                raise _diverged(cursor, f"the record at position {pos} does not follow on")
            records.append((pos, self._sealer.open(payload, f"the record at position {pos}")))
        if time.monotonic() - self._touched >= self.touch_every:
            # The heartbeat: the node's row says it is live, and where.
            self._touch(connection, records[-1][0] if records else cursor)
        return Fetched(records, previous, head, len(rows) == self.page)

    def _touch(self, connection: Connection, applied: int) -> None:
        self._touched = time.monotonic()
        if not self._claimed:
            self._claimed = take_node_lock(connection, self.node)
        connection.execute(
            "INSERT INTO oauthd_nodes (id, applied) VALUES (%s, %s) ON CONFLICT (id)"
            " DO UPDATE SET applied = excluded.applied, seen = now()",
            (self.node, applied),
        )

    def load(self) -> Loaded:
        """
        The latest complete snapshot, then every record after it (blocking;
        at start).
        """
        connection = self._link.get()
        self._claimed = claim_node(connection, self.node)
        self._sealer.check(connection)
        snapshot = connection.execute(
            "SELECT id, pos, hash, records FROM oauthd_snapshots WHERE complete"
            " ORDER BY pos DESC, id DESC LIMIT 1"
        ).fetchone()
        payloads: list[bytes] = []
        cursor, cursor_hash, records = 0, GENESIS, 0
        if snapshot is not None:
            snapshot_id, cursor, stored_hash, records = snapshot
            cursor_hash = bytes(stored_hash)
            for (data,) in connection.execute(
                "SELECT data FROM oauthd_snapshot_chunks WHERE snapshot = %s ORDER BY seq", (snapshot_id,)
            ):
                payloads += unframe(self._sealer.open(bytes(data), f"the snapshot at position {cursor}"))
        while True:
            fetched = self.fetch(cursor, cursor_hash, False)
            payloads += [payload for _, payload in fetched.records]
            if fetched.records:
                cursor, cursor_hash = fetched.records[-1][0], fetched.last_hash
            if not fetched.full:
                break
        self._touch(connection, cursor)
        return Loaded(payloads, cursor, cursor_hash, records)

    def head(self) -> int:
        try:
            row = self._link.get().execute("SELECT pos FROM oauthd_head").fetchone()
        except psycopg.Error as e:
            raise self._link.broken(e) from None
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self._link.close()


class Listener:
    """
    The listener thread: waits for the writers' wake-ups (C{LISTEN}), and
    calls C{wake} (thread-safe) after each, and after C{poll} seconds
    without one, so a lost wake-up only delays a follower.
    """

    def __init__(self, uri: str, name: str, wake: Callable[[], None], poll: float,
                 failures: Callable[[str], None] | None = None) -> None:
        """
        @param failures: called (thread-safe) with each payload of the
            other nodes' rate-limit failures.
        """
        self._link = Link(uri, name)
        self._wake = wake
        self._failures = failures
        self._poll = poll
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """
        Ask the thread to stop (within C{poll} seconds).
        """
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                connection = self._link.get()
                connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if self._failures is not None:
                    connection.execute(f"LISTEN {FAILURES_CHANNEL}")
                self._wake()
                woken = time.monotonic()
                while not self._stopping.is_set():
                    # Short waits, so a stop is seen soon.
                    notified = list(connection.notifies(timeout=_STOP_CHECK, stop_after=1))
                    appended = False
                    for notice in notified:
                        if notice.channel == FAILURES_CHANNEL and self._failures is not None:
                            self._failures(notice.payload)
                        else:
                            appended = True
                    if appended or time.monotonic() - woken >= self._poll:
                        self._wake()
                        woken = time.monotonic()
            except (psycopg.Error, LogUnavailable):
                self._link.close()
                self._stopping.wait(self._poll)
                # A read now fails too: the node learns the log is out of
                # reach, and reads again as soon as it is back.
                self._wake()
        self._link.close()
