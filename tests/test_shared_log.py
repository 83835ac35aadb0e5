"""
Several nodes over one log: what every shared log does (run against a
L{MemorySharedLog}, stepped by hand, and against PostgreSQL, two L{PostgresLog}
nodes with their jobs run inline over one database), then what only the
PostgreSQL log has to show (its schema, its partitions, appenders on several
connections at once, a reconnection, the password kept out of the logs).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import LogDiverged, MemorySharedLog, SchemaTooNew, SharedLogNode
from oauthd.eventlog.chain import GENESIS, link
from oauthd.interfaces import Claim, ClaimConflict, IEventLog
from oauthd.testing import InlinePool, InlineReactor
from tests.postgres import fresh_database


class Follower:
    """
    What a node's follower was given.
    """

    def __init__(self, log: IEventLog) -> None:
        self.records: list[tuple[int, bytes]] = []
        log.follow(lambda position, payload: self.records.append((position, payload)))


class SharedLogContract(SynchronousTestCase):
    """
    What every shared log does.  Subclasses say how to start a node over
    the test's one log, make a node deliver what it has not yet, and rewind
    the log.
    """

    __test__ = False

    def node(self) -> IEventLog:
        raise NotImplementedError()

    def step(self, node: IEventLog) -> None:
        """
        Let C{node} deliver what is committed (a log that reads on its own
        does nothing here).
        """

    def rewind(self, position: int) -> None:
        raise NotImplementedError()

    def commit(self, node: IEventLog, payloads: list[bytes]) -> None:
        """
        Append C{payloads} on C{node} and see it acknowledged.
        """
        appended = node.append(payloads)
        self.step(node)
        self.successResultOf(appended)

    def catch_up(self, node: IEventLog) -> None:
        synced = node.sync()
        self.step(node)
        self.successResultOf(synced)

    def test_every_node_follows_one_order(self) -> None:
        """
        Appends from two nodes, interleaved, reach both followers with the
        same dense positions, in the order they were committed.
        """
        a, b = self.node(), self.node()
        seen_a, seen_b = Follower(a), Follower(b)
        for i in range(5):
            a.append([b"a%d" % i])
            b.append([b"b%d" % i, b"b%d'" % i])
        self.catch_up(a)
        self.catch_up(b)
        expected = [p for i in range(5) for p in (b"a%d" % i, b"b%d" % i, b"b%d'" % i)]
        self.assertEqual(seen_a.records, list(enumerate(expected, start=1)))
        self.assertEqual(seen_b.records, seen_a.records)
        self.assertEqual((a.position, b.position), (15, 15))

    def test_claims_hold_across_nodes(self) -> None:
        """
        A key claimed on one node cannot be claimed on another; a rotation
        on one node makes the same rotation on the other fail.
        """
        a, b = self.node(), self.node()
        self.successResultOf(a.append([b"code used on a"], [Claim("code:1", "used")]))
        self.failureResultOf(b.append([b"code used on b"], [Claim("code:1", "used")]), ClaimConflict)
        self.successResultOf(a.append([b"issued"], [Claim("grant:g", "r1")]))
        self.successResultOf(b.append([b"rotated on b"], [Claim("grant:g", "r2", expect="r1")]))
        self.failureResultOf(a.append([b"rotated on a"], [Claim("grant:g", "r2'", expect="r1")]),
                             ClaimConflict)
        seen = Follower(self.node())
        self.assertEqual(seen.records, [])
        c = self.node()
        self.assertEqual(list(c.replay()), [b"code used on a", b"issued", b"rotated on b"])

    def test_sync_waits_for_what_others_committed(self) -> None:
        """
        sync() on a node fires only once what another node committed
        before the call has been delivered there.
        """
        a, b = self.node(), self.node()
        seen = Follower(a)
        self.successResultOf(b.append([b"from b"]))
        synced = a.sync()
        at_sync: list[list[tuple[int, bytes]]] = []
        synced.addCallback(lambda _: at_sync.append(list(seen.records)))
        self.step(a)
        self.successResultOf(synced)
        self.assertEqual(at_sync, [[(1, b"from b")]])

    def test_start_from_snapshot_plus_tail(self) -> None:
        """
        A node starting after a compaction reads the snapshot, then the
        records after the position it was taken at.
        """
        a = self.node()
        Follower(a)
        for i in range(5):
            self.commit(a, [b"old %d" % i])
        self.successResultOf(a.compact([b"live 1", b"live 2"]))
        self.successResultOf(self.node().append([b"after"]))
        c = self.node()
        self.assertEqual(list(c.replay()), [b"live 1", b"live 2", b"after"])
        self.assertEqual((c.position, c.record_count), (6, 3))

    def test_rewound_log_is_refused(self) -> None:
        """
        A node whose log lost records it delivered (a database restored from
        an older backup) refuses it: sync and appends fail with
        L{LogDiverged}.
        """
        a = self.node()
        Follower(a)
        self.commit(a, [b"1", b"2", b"3"])
        self.rewind(1)
        synced = a.sync()
        self.step(a)
        self.failureResultOf(synced, LogDiverged)
        self.failureResultOf(a.append([b"4"]), LogDiverged)

    def test_rewritten_history_is_refused(self) -> None:
        """
        A node refuses a log whose records at its cursor were replaced by
        others (rewound, then written again up to and past the cursor).
        """
        a = self.node()
        Follower(a)
        self.commit(a, [b"1", b"2", b"3"])
        self.rewind(2)
        self.successResultOf(self.node().append([b"other 3", b"other 4"]))
        synced = a.sync()
        self.step(a)
        self.failureResultOf(synced, LogDiverged)


class MemorySharedLogTests(SharedLogContract):
    """
    The shared-log contract, for L{MemorySharedLog}.
    """

    __test__ = True

    def setUp(self) -> None:
        self.shared = MemorySharedLog()

    def node(self) -> IEventLog:
        return self.shared.node()

    def step(self, node: IEventLog) -> None:
        assert isinstance(node, SharedLogNode)
        node.step()

    def rewind(self, position: int) -> None:
        self.shared.rewind(position)

    def test_stepped_delivery(self) -> None:
        """
        A node's follower gets nothing until it is stepped, then the number
        of records asked for; its own append fires when delivered there.
        """
        a, b = self.shared.node(), self.shared.node()
        seen_a, seen_b = Follower(a), Follower(b)
        acked = a.append([b"1", b"2", b"3"])
        self.assertNoResult(acked)
        self.assertEqual(b.step(2), 2)
        self.assertEqual((seen_a.records, seen_b.records), ([], [(1, b"1"), (2, b"2")]))
        self.shared.deliver()
        self.successResultOf(acked)
        self.assertEqual(seen_a.records, seen_b.records)

    def test_chain_matches(self) -> None:
        """
        The records are chained as L{oauthd.eventlog.chain} says.
        """
        self.successResultOf(self.shared.node().append([b"x", b"y"]))
        first = link(GENESIS, 1, b"x")
        self.assertEqual(self.shared.records, [(b"x", first), (b"y", link(first, 2, b"y"))])


def sql(uri: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(uri, autocommit=True) as connection:
        cursor = connection.execute(query, args or None)
        return cursor.fetchall() if cursor.description else []


class PostgresSharedLogTests(SharedLogContract):
    """
    The shared-log contract, for nodes over one PostgreSQL database, and
    what only the PostgreSQL log does.
    """

    __test__ = True

    def setUp(self) -> None:
        self.uri = fresh_database()

    def node(self, **options: Any) -> Any:
        from oauthd.eventlog.postgresql import open_postgres_log

        options.setdefault("partition_size", 4)
        log = open_postgres_log(self.uri, InlineReactor(), pool=InlinePool(), listen=False, **options)
        self.addCleanup(log.close)
        return log

    def rewind(self, position: int) -> None:
        sql(self.uri, "DELETE FROM oauthd_log WHERE pos > %s", position)
        sql(self.uri, "UPDATE oauthd_head SET pos = %s, hash = (SELECT hash FROM oauthd_log WHERE pos = %s)",
            position, position)

    def test_schema_newer_is_refused(self) -> None:
        """
        A database whose schema is newer than this oauthd knows is refused,
        and left as it is.
        """
        self.successResultOf(self.node().close())
        sql(self.uri, "UPDATE oauthd_schema SET version = 99")
        with self.assertRaises(SchemaTooNew) as caught:
            self.node()
        self.assertIn("version 99", str(caught.exception))
        self.assertEqual(sql(self.uri, "SELECT version FROM oauthd_schema"), [(99,)])

    def test_partitions_by_position(self) -> None:
        """
        The log is partitioned by position range, a partition created ahead
        of the one in use.
        """
        a = self.node()
        for i in range(10):
            self.successResultOf(a.append([b"%d" % i]))
        names = sql(self.uri, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                              " WHERE c.relkind = 'r' ORDER BY c.relname")
        self.assertEqual([n for (n,) in names], ["oauthd_log_p0", "oauthd_log_p1", "oauthd_log_p2",
                                                 "oauthd_log_p3"])
        self.assertEqual(sql(self.uri, "SELECT count(*), min(pos), max(pos) FROM oauthd_log"), [(10, 1, 10)])

    def test_reconnect_checks_the_cursor(self) -> None:
        """
        A node whose reader reconnects checks the hash at its cursor: a log
        whose record there was replaced is refused.
        """
        a = self.node(node="a")
        Follower(a)
        self.successResultOf(a.append([b"1", b"2", b"3"]))
        sql(self.uri, "UPDATE oauthd_log SET hash = %s WHERE pos = 3", b"\x01" * 32)
        sql(self.uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name = 'oauthd a reader'")
        self.failureResultOf(a.sync(), LogDiverged)

    def test_reconnects_after_a_broken_connection(self) -> None:
        """
        A node whose connections were cut fails the append it was making
        with L{LogUnavailable} (whether it was committed is not known:
        following the log tells), and reconnects for the next append and
        read.
        """
        from oauthd.eventlog import LogUnavailable

        a = self.node(node="a")
        seen = Follower(a)
        self.successResultOf(a.append([b"1"]))
        sql(self.uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name LIKE 'oauthd a %%'")
        self.failureResultOf(a.append([b"lost"]), LogUnavailable)
        # Refused at once while a probe reconnects.
        self.failureResultOf(a.append([b"refused"]), LogUnavailable)
        self.successResultOf(a.append([b"2"]))
        self.assertEqual(seen.records, [(1, b"1"), (2, b"2")])

    def test_nodes_and_synchronous_commit(self) -> None:
        """
        A node records its applied position in the nodes table; its
        sessions commit synchronously whatever the URI asks.
        """
        a = self.node(node="n1", touch_every=0)
        Follower(a)
        self.successResultOf(a.append([b"1"]))
        self.assertEqual(sql(self.uri, "SELECT id, applied FROM oauthd_nodes"), [("n1", 1)])
        from oauthd.eventlog.postgresql.connection import connect

        with connect(self.uri + "&options=-csynchronous_commit%3Doff", "probe") as connection:
            self.assertEqual(connection.execute("SHOW synchronous_commit").fetchone(), ("on",))

    def test_password_is_not_logged(self) -> None:
        """
        The URI's password never reaches the log.
        """
        from oauthd.eventlog.postgresql import redact

        from oauthd.eventlog.postgresql import open_postgres_log

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        uri = self.uri.replace("postgresql:///", "postgresql://postgres:sekrit@/")
        log = open_postgres_log(uri, InlineReactor(), pool=InlinePool(), listen=False)
        self.addCleanup(log.close)
        from twisted.logger import formatEvent

        text = " ".join(formatEvent(e) for e in events)
        self.assertIn("postgres:***@", text)
        self.assertNotIn("sekrit", text)
        self.assertEqual(redact("host=db password='x y' user=u"), "host=db password=*** user=u")
        self.assertEqual(redact("postgresql://u@h/d?password=x&sslmode=require"),
                         "postgresql://u@h/d?password=***&sslmode=require")

    def test_concurrent_appenders_follow_in_position_order(self) -> None:
        """
        Four appenders on connections of their own, and a reader following
        meanwhile: positions are dense, every record is read once, in
        position order, its chain intact, and each appender's records in
        the order it appended them.
        """
        from oauthd.eventlog.postgresql.database import Appending, Reader, Writer

        self.successResultOf(self.node().close())
        writers, per_writer = 4, 150
        done = threading.Event()

        def append(w: int) -> None:
            writer = Writer.to(self.uri, f"w{w}")
            for i in range(per_writer):
                outcome = writer.append([Appending((b"%d:%d" % (w, i),))])
                assert isinstance(outcome[0], int), outcome
            writer.close()

        read: list[tuple[int, bytes]] = []

        def follow() -> None:
            reader = Reader.to(self.uri, "r", "r", 50)
            cursor, cursor_hash = 0, GENESIS
            while len(read) < writers * per_writer:
                fetched = reader.fetch(cursor, cursor_hash, False)
                read.extend(fetched.records)
                if fetched.records:
                    cursor, cursor_hash = fetched.records[-1][0], fetched.last_hash
                elif done.is_set() and len(read) < writers * per_writer:
                    break
            reader.close()

        follower = threading.Thread(target=follow)
        follower.start()
        threads = [threading.Thread(target=append, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        follower.join()
        self.assertEqual([p for p, _ in read], list(range(1, writers * per_writer + 1)))
        for w in range(writers):
            mine = [payload for _, payload in read if payload.startswith(b"%d:" % w)]
            self.assertEqual(mine, [b"%d:%d" % (w, i) for i in range(per_writer)])


class DriverMissingTests(SynchronousTestCase):
    def test_one_line_error_names_the_extra(self) -> None:
        """
        Without psycopg, opening a PostgreSQL log fails with one line that
        names the extra to install.
        """
        script = (
            "import sys; sys.modules['psycopg'] = None\n"
            "from oauthd.eventlog.postgresql import open_postgres_log\n"
            "try:\n"
            "    open_postgres_log('postgresql:///x', None)\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e)\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout, "DriverMissing the PostgreSQL event log needs psycopg:"
                                     " pip install 'oauthd[postgresql]'\n")


class PostgresGroupCommitTests(SynchronousTestCase):
    """
    The PostgreSQL writer gathers the appends made while one is in flight
    into one statement; each stays atomic.
    """

    def test_a_conflict_refuses_only_its_append(self) -> None:
        """
        Of appends gathered into one statement, the one whose claim does not
        hold is refused alone: the others take consecutive positions.
        """
        from oauthd.eventlog.postgresql import open_postgres_log
        from oauthd.testing import SteppingPool

        pool = SteppingPool()
        log = open_postgres_log(fresh_database(), InlineReactor(), pool=pool, listen=False)
        first = log.append([b"x"])
        gathered = [log.append([b"y"], [Claim("code:1", "used")]),
                    log.append([b"z"], [Claim("code:1", "used")]),
                    log.append([b"w1", b"w2"]),
                    log.append([], [Claim("user:ann", "1"), Claim("code:1", "x")])]
        self.assertEqual(len(pool.jobs), 1)
        pool.run_one()
        self.successResultOf(first)
        self.assertEqual(len(pool.jobs), 1)
        pool.run_one()
        self.successResultOf(gathered[0])
        self.assertEqual(self.failureResultOf(gathered[1], ClaimConflict).value.key, "code:1")
        self.successResultOf(gathered[2])
        self.failureResultOf(gathered[3], ClaimConflict)
        self.assertEqual(log.position, 4)
        closed = log.close()
        while pool.jobs:
            pool.run_one()
        self.successResultOf(closed)
        again = open_postgres_log(log.uri, InlineReactor(), pool=InlinePool(), listen=False)
        self.addCleanup(again.close)
        self.assertEqual(list(again.replay()), [b"x", b"y", b"w1", b"w2"])
        self.successResultOf(again.append([], [Claim("user:ann", "1")]))

    def test_raced_rotations_never_both_win(self) -> None:
        """
        The same refresh rotation (a compare-and-set on its grant) raced
        from two connections, 100 times: exactly one wins each time.
        """
        from oauthd.eventlog.postgresql.database import Appending, Writer

        uri = fresh_database()
        from oauthd.eventlog.postgresql import open_postgres_log

        self.successResultOf(open_postgres_log(uri, InlineReactor(), pool=InlinePool(), listen=False).close())
        rounds = 100
        setup = Writer.to(uri, "setup")
        assert all(isinstance(o, int) for o in setup.append(
            [Appending((b"issued %d" % i,), (Claim(f"grant:{i}", "r1"),)) for i in range(rounds)]))
        setup.close()
        barrier = threading.Barrier(2)
        wins: list[list[bool]] = [[], []]

        def rotate(side: int) -> None:
            writer = Writer.to(uri, f"side {side}")
            for i in range(rounds):
                barrier.wait()
                [outcome] = writer.append([Appending((b"rotated %d on %d" % (i, side),),
                                                     (Claim(f"grant:{i}", f"r2 {side}", expect="r1"),))])
                wins[side].append(isinstance(outcome, int))
            writer.close()

        threads = [threading.Thread(target=rotate, args=(side,)) for side in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([a + b for a, b in zip(*wins)], [1] * rounds)


def test_without_postgresql_tests_skip_unless_required() -> None:
    """
    With no cluster to start, a test that needs one is skipped, or failed
    under C{OAUTHD_REQUIRE_POSTGRES=1}.
    """
    import pytest

    from tests.postgres import usable

    with pytest.raises(pytest.skip.Exception, match="no pg_ctl"):
        usable("PostgreSQL is not installed (no pg_ctl)", require=False)
    with pytest.raises(pytest.fail.Exception, match="OAUTHD_REQUIRE_POSTGRES=1, but .*no pg_ctl"):
        usable("PostgreSQL is not installed (no pg_ctl)", require=True)


class PostgresUnavailableTests(SynchronousTestCase):
    def test_appends_fail_at_once_until_reconnected(self) -> None:
        """
        Once the writer's connection broke, appends fail at once with
        L{LogUnavailable} (so the committer changes nothing in memory) while
        a probe reconnects; after it, appends go through again.
        """
        from oauthd.eventlog import LogUnavailable
        from oauthd.eventlog.postgresql import open_postgres_log
        from oauthd.testing import SteppingPool

        pool = SteppingPool()
        uri = fresh_database()
        log = open_postgres_log(uri, InlineReactor(), pool=pool, listen=False, node="u")
        first = log.append([b"1"])
        pool.run_one()
        self.successResultOf(first)
        sql(uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'oauthd u writer'")
        broken = log.append([b"2"])
        pool.run_one()
        self.failureResultOf(broken, LogUnavailable)
        self.failureResultOf(log.append([b"3"]), LogUnavailable)
        self.failureResultOf(log.append([b"4"]), LogUnavailable)
        self.assertEqual(len(pool.jobs), 1)
        pool.run_one()
        again = log.append([b"5"])
        pool.run_one()
        self.successResultOf(again)
        self.assertEqual(sql(uri, "SELECT pos, payload FROM oauthd_log ORDER BY pos"), [(1, b"1"), (2, b"5")])
        closed = log.close()
        while pool.jobs:
            pool.run_one()
        self.successResultOf(closed)
