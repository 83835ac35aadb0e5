"""
A write on the shared log fails (503 and Retry-After) rather than wait while
the database is out of reach: its connections give up on a database that
stopped answering (a host gone, a network cut: no reset ever comes) rather
than wait for the kernel's retransmissions, a quarter of an hour, unless
the URI says otherwise; an append committed but not read back fails.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog.postgresql.connection import connect
from oauthd.testing import InlineReactor
from tests.postgres import fresh_database
from tests.test_shared_log import sql


def test_connections_time_out_unless_the_uri_says() -> None:
    uri = fresh_database()
    with connect(uri, "probe") as connection:
        used = conninfo_to_dict(connection.info.dsn)
    assert {"connect_timeout", "keepalives", "keepalives_idle", "tcp_user_timeout"} <= set(used)
    with connect(uri + "&connect_timeout=7&tcp_user_timeout=0", "probe") as connection:
        used = conninfo_to_dict(connection.info.dsn)
    assert (used["connect_timeout"], used["tcp_user_timeout"]) == ("7", "0")


class CommittedThenUnreachableTests(SynchronousTestCase):
    def test_append_committed_but_not_read_back_fails(self) -> None:
        """
        An append committed just before the database went out of reach,
        which the node cannot read back, fails with L{LogUnavailable} (its
        outcome unknown: 503, and following the log tells once it is back)
        rather than leaving its request waiting until the database returns.
        """
        from oauthd.eventlog import LogUnavailable
        from oauthd.eventlog.postgresql import open_postgres_log
        from oauthd.testing import SteppingPool

        pool = SteppingPool()
        uri = fresh_database()
        name = uri.split("?")[0].rsplit("/", 1)[1]
        log = open_postgres_log(uri, InlineReactor(), pool=pool, listen=False, node="u")
        log.follow(lambda position, payload: None)
        pool.run_all()
        appended = log.append([b"1"])
        pool.run_one()  # the writer: committed
        admin = uri.replace(f"/{name}?", "/postgres?")
        sql(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        self.addCleanup(sql, admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        sql(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'oauthd u %%'")
        pool.run_one()  # the reader: cannot reconnect
        self.failureResultOf(appended, LogUnavailable)
        sql(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        synced = log.sync()
        pool.run_all()
        self.successResultOf(synced)
        self.assertEqual(log.position, 1)
        closed = log.close()
        pool.run_all()
        self.successResultOf(closed)
