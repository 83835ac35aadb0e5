"""
The shared log's connections give up on a database that stopped answering
(a host gone, a network cut: no reset ever comes), so writes fail with
L{LogUnavailable} (503 and Retry-After) rather than wait for the kernel's
retransmissions, a quarter of an hour; and a URI's own settings win.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from oauthd.eventlog.postgresql.connection import connect
from tests.postgres import fresh_database


def test_connections_time_out_unless_the_uri_says() -> None:
    uri = fresh_database()
    with connect(uri, "probe") as connection:
        used = conninfo_to_dict(connection.info.dsn)
    assert {"connect_timeout", "keepalives", "keepalives_idle", "tcp_user_timeout"} <= set(used)
    with connect(uri + "&connect_timeout=7&tcp_user_timeout=0", "probe") as connection:
        used = conninfo_to_dict(connection.info.dsn)
    assert (used["connect_timeout"], used["tcp_user_timeout"]) == ("7", "0")
