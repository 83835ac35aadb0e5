"""
The operations side of the shared log in PostgreSQL: node ids, compaction
across nodes (one at a time, old partitions dropped, a node passed by it
told so), the claims' sweep one node at a time, the schema's upgrade, and
how recently a node reached the log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import JournalError
from oauthd.eventlog.errors import LogGap, NodeInUse
from oauthd.interfaces import Claim, Expect
from oauthd.testing import InlinePool, InlineReactor
from tests.postgres import fresh_database
from tests.test_shared_log import Follower, sql


def test_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    """
    Without a configured id, a node makes one at its first start, keeps it
    in DATA/node-id (0600) and finds it again; a configured id wins.
    """
    from oauthd.eventlog.postgresql.node import node_id

    made = node_id(str(tmp_path))
    assert len(made) == 32 and made.isalnum()
    assert node_id(str(tmp_path)) == made
    assert stat.S_IMODE(os.stat(tmp_path / "node-id").st_mode) == 0o600
    assert node_id(str(tmp_path), "web-1") == "web-1"


def test_bad_node_id_file_is_one_line(tmp_path: Path) -> None:
    """
    A node-id file open to others, or holding no id, is refused with one
    line saying what to do.
    """
    from oauthd.eventlog.postgresql.node import node_id

    path = tmp_path / "node-id"
    path.write_text("not an id!\n")
    path.chmod(0o600)
    with pytest.raises(JournalError, match="holds no node id .* remove it to make a new one"):
        node_id(str(tmp_path))
    path.write_text("fine\n")
    path.chmod(0o644)
    with pytest.raises(JournalError, match=r"open to others .*chmod 600"):
        node_id(str(tmp_path))


def test_node_id_setting() -> None:
    """
    C{node_id} takes letters, digits, '.', '_' and '-' (64 at most).
    """
    from oauthd.config import ConfigError, build_config

    assert build_config({"node_id": "web-1.a_b"}).node_id == "web-1.a_b"
    for bad in ("a b", "x" * 65, "é", "a/b"):
        with pytest.raises(ConfigError, match="^node_id: expected at most 64 letters"):
            build_config({"node_id": bad})
    with pytest.raises(ConfigError, match="^eventlog_max_lag: 0 is not between 1 and 3600"):
        build_config({"eventlog_max_lag": 0})


class OpsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.uri = fresh_database()

    def node(self, **options: Any) -> Any:
        from oauthd.eventlog.postgresql import open_postgres_log

        options.setdefault("partition_size", 4)
        log = open_postgres_log(self.uri, InlineReactor(), pool=InlinePool(), listen=False, **options)
        self.addCleanup(log.close)
        return log

    def test_two_live_nodes_with_one_id_are_refused(self) -> None:
        """
        A node whose id a live node has is refused, with one line; once
        that node has stopped (its session ended), the id can start again.
        """
        a = self.node(node="web-1")
        with self.assertRaises(NodeInUse) as caught:
            self.node(node="web-1")
        self.assertEqual(len(str(caught.exception).splitlines()), 1)
        self.assertIn("node id 'web-1' is in use by a live node", str(caught.exception))
        self.successResultOf(a.close())
        self.node(node="web-1")

    def test_a_silent_holder_is_not_live_for_ever(self) -> None:
        """
        A session holding the id's lock whose node has not been seen for a
        while (cut off without a goodbye) does not keep the id from
        starting again.
        """
        self.node(node="web-1")
        sql(self.uri, "UPDATE oauthd_nodes SET seen = now() - interval '1 minute'")
        self.node(node="web-1")

    def test_compaction_drops_what_no_node_needs(self) -> None:
        """
        A snapshot drops the partitions below the previous snapshot and
        below every live node's applied position; a node that started from
        it (no older record needed) and one from the log both agree.
        """
        a = self.node(node="a", touch_every=0)
        seen = Follower(a)
        for i in range(10):
            self.successResultOf(a.append([b"%d" % i]))
        self.successResultOf(a.compact([b"s1"]))
        self.assertEqual(sql(self.uri, "SELECT min(pos) FROM oauthd_log"), [(1,)])
        for i in range(10, 20):
            self.successResultOf(a.append([b"%d" % i]))
        self.successResultOf(a.compact([b"s2"]))
        # The previous snapshot is at 10: partitions [0, 4) and [4, 8) go.
        self.assertEqual(sql(self.uri, "SELECT min(pos) FROM oauthd_log"), [(8,)])
        self.assertEqual(seen.records[-1], (20, b"19"))
        b = self.node(node="b")
        self.assertEqual(list(b.replay()), [b"s2"])

    def test_a_node_behind_keeps_its_records(self) -> None:
        """
        A live node's applied position holds compaction back.
        """
        a = self.node(node="a", touch_every=0)
        Follower(a)
        self.node(node="slow")  # applied 0, live
        for i in range(20):
            self.successResultOf(a.append([b"%d" % i]))
            if i in (9, 19):
                self.successResultOf(a.compact([b"s%d" % i]))
        self.assertEqual(sql(self.uri, "SELECT min(pos) FROM oauthd_log"), [(1,)])

    def test_retention_keeps_recent_records(self) -> None:
        """
        Records younger than the retention stay, whatever the snapshots.
        """
        a = self.node(node="a", touch_every=0, retention=3600)
        Follower(a)
        for i in range(20):
            self.successResultOf(a.append([b"%d" % i]))
            if i in (9, 19):
                self.successResultOf(a.compact([b"s%d" % i]))
        self.assertEqual(sql(self.uri, "SELECT min(pos) FROM oauthd_log"), [(1,)])

    def test_a_node_passed_by_compaction_finds_a_gap(self) -> None:
        """
        A node that was not seen (not live) while compaction dropped the
        records after its cursor fails with L{LogGap}, which says what
        happened and what to do, rather than L{LogDiverged}.
        """
        a = self.node(node="a", touch_every=0)
        Follower(a)
        b = self.node(node="b")
        behind = Follower(b)
        sql(self.uri, "UPDATE oauthd_nodes SET seen = now() - interval '1 hour' WHERE id = 'b'")
        for i in range(20):
            self.successResultOf(a.append([b"%d" % i]))
            if i in (9, 19):
                self.successResultOf(a.compact([b"s%d" % i]))
        failure = self.failureResultOf(b.sync(), LogGap)
        self.assertIn("compaction dropped positions 1 to", str(failure.value))
        self.assertIn("restart it: it starts from the latest snapshot", str(failure.value))
        self.assertEqual(behind.records, [])
        self.assertIn("compaction dropped", b.failure)

    def test_one_node_compacts_at_a_time(self) -> None:
        """
        While one node holds the compaction lock, another's compaction
        writes nothing (and tells its size from the latest snapshot).
        """
        from oauthd.eventlog.postgresql.snapshots import COMPACT_LOCK

        a = self.node(node="a")
        Follower(a)
        for i in range(5):
            self.successResultOf(a.append([b"%d" % i]))
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (COMPACT_LOCK,))
            self.successResultOf(a.compact([b"s1"]))
            self.assertEqual(sql(self.uri, "SELECT count(*) FROM oauthd_snapshots"), [(0,)])
            other.execute("SELECT pg_advisory_unlock(%s)", (COMPACT_LOCK,))
        self.successResultOf(a.compact([b"s1"]))
        self.assertEqual(sql(self.uri, "SELECT pos, records FROM oauthd_snapshots"), [(5, 1)])
        self.assertEqual(a.record_count, 1)

    def test_claims_sweep_one_node_at_a_time(self) -> None:
        """
        Expired claims are swept by one node at a time, on a schedule.
        """
        from oauthd.eventlog.postgresql.snapshots import SWEEP_LOCK

        clock = Clock()
        a = self.node(node="a", clock=clock, sweep_every=60)
        self.successResultOf(a.append([b"x"], [Claim("code:1", "used", Expect.ABSENT, expires=10.0)]))
        import psycopg

        with psycopg.connect(self.uri) as other:
            other.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
            self.assertEqual(self.successResultOf(a.sweep_claims(100.0)), 0)
        clock.advance(60)
        self.assertEqual(sql(self.uri, "SELECT count(*) FROM oauthd_claims"), [(0,)])

    def test_last_contact(self) -> None:
        """
        A node's last contact is when it last read the log to its head.
        """
        clock = Clock()
        clock.advance(100)
        a = self.node(node="a", clock=clock)
        self.assertIsNone(a.last_contact)
        Follower(a)
        self.assertEqual(a.last_contact, 100)
        clock.advance(7)
        self.successResultOf(a.sync())
        self.assertEqual(a.last_contact, 107)
        self.assertTrue(a.reachable)

    def test_schema_1_is_upgraded(self) -> None:
        """
        A version 1 database is upgraded to version 2; its records stay.
        """
        from importlib import resources

        import psycopg

        v1 = resources.files("oauthd.eventlog.postgresql").joinpath("schema", "v1.sql").read_text()
        with psycopg.connect(self.uri, autocommit=True) as connection:
            connection.execute(v1)
            connection.execute("SELECT oauthd_append(ARRAY['\\x01'::bytea], ARRAY[1], '{}', '{}', '{}',"
                               " '{}', '{}', ARRAY[0])")
        a = self.node(node="a")
        self.assertEqual(list(a.replay()), [b"\x01"])
        self.assertEqual(sql(self.uri, "SELECT version FROM oauthd_schema"), [(2,)])


KEY = bytes(range(32))


class SealingTests(SynchronousTestCase):
    """
    With a secret key, what the log keeps in PostgreSQL is sealed: the
    records and the snapshots; nodes with the key read them; a node with
    another key, or none, is refused with one line.
    """

    def setUp(self) -> None:
        self.uri = fresh_database()

    def node(self, **options: Any) -> Any:
        from oauthd.eventlog.postgresql import open_postgres_log

        log = open_postgres_log(self.uri, InlineReactor(), pool=InlinePool(), listen=False, **options)
        self.addCleanup(log.close)
        return log

    def test_nothing_in_the_clear(self) -> None:
        a = self.node(secret_key=KEY)
        seen = Follower(a)
        self.successResultOf(a.append([b"signing-key-secret"]))
        self.successResultOf(a.compact([b"totp-secret"]))
        self.successResultOf(a.append([b"after"]))
        self.assertEqual(seen.records, [(1, b"signing-key-secret"), (2, b"after")])
        stored = b"".join(bytes(p) for (p,) in sql(self.uri, "SELECT payload FROM oauthd_log"))
        chunks = b"".join(bytes(d) for (d,) in sql(self.uri, "SELECT data FROM oauthd_snapshot_chunks"))
        self.assertNotIn(b"secret", stored + chunks)
        self.assertNotIn(b"after", stored)
        b = self.node(secret_key=KEY)
        self.assertEqual(list(b.replay()), [b"totp-secret", b"after"])
        self.assertNotIn(KEY.hex(), str(sql(self.uri, "SELECT * FROM oauthd_settings")))

    def test_another_key_or_none_is_refused(self) -> None:
        from oauthd.eventlog.postgresql.sealing import KeyMismatch

        self.node(secret_key=KEY)
        for other, why in ((bytes(32), "is not the key the event log was written with"),
                           (None, "the event log is sealed with a secret key")):
            with self.assertRaises(KeyMismatch) as caught:
                self.node(secret_key=other)
            self.assertIn(why, str(caught.exception))
            self.assertEqual(len(str(caught.exception).splitlines()), 1)

    def test_a_record_changed_in_the_database_does_not_open(self) -> None:
        """
        A sealed record altered in the database (its chain recomputed) stops
        the node with one line, rather than delivering it.
        """
        from oauthd.eventlog.chain import GENESIS, link
        from oauthd.eventlog.postgresql.sealing import KeyMismatch

        a = self.node(secret_key=KEY)
        self.successResultOf(a.append([b"x"]))
        forged = b"\x01" + bytes(40)
        sql(self.uri, "UPDATE oauthd_log SET payload = %s, hash = %s", forged, link(GENESIS, 1, forged))
        with self.assertRaises(KeyMismatch) as caught:
            self.node(secret_key=KEY)
        self.assertIn("the record at position 1 does not open", str(caught.exception))


def test_key_file(tmp_path: Path) -> None:
    """
    The key file holds 64 hex digits, is the running user's and private;
    anything else is refused with one line.
    """
    from oauthd.eventlog.postgresql.sealing import read_key_file

    path = tmp_path / "key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    assert read_key_file(str(path)) == KEY
    path.write_text("abc\n")
    with pytest.raises(JournalError, match=r"expected 64 hexadecimal digits \(make one with: openssl rand"):
        read_key_file(str(path))
    path.write_text(KEY.hex())
    path.chmod(0o640)
    with pytest.raises(JournalError, match=r"^eventlog_secret_key_file .*open to others"):
        read_key_file(str(path))
    with pytest.raises(JournalError, match=r"cannot read it: No such file"):
        read_key_file(str(tmp_path / "missing"))
