"""
Connecting to the shared log's database, and naming it in logs without its
password.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["connect", "is_postgres_uri", "redact"]

_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_QUERY = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_PASSWORD_USERINFO = re.compile(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@")


def is_postgres_uri(location: str) -> bool:
    """
    Whether C{location} names a PostgreSQL database (not a directory).
    """
    return location.startswith(("postgresql://", "postgres://"))


def redact(uri: str) -> str:
    """
    C{uri} with its password, if any, replaced by C{***}, in either the URI
    form (C{postgresql://user:secret@host/db?password=...}) or the
    key-value form (C{host=... password=secret}).
    """
    if not is_postgres_uri(uri):
        return _PASSWORD_KV.sub(r"\1***", uri)
    uri = _PASSWORD_USERINFO.sub(r"\1:***@", uri)
    return _PASSWORD_QUERY.sub(r"\1***", uri)


_TIMEOUTS = {
    "connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
    "keepalives_count": "3", "tcp_user_timeout": "15000",
}
"""
libpq's settings, where the URI does not give its own: a database that
stops answering without a reset (its host gone, the network cut) fails a
connection within seconds, so appends fail (503, Retry-After) and the
threads reconnect, rather than wait for the kernel to give up.
"""


def connect(uri: str, name: str) -> psycopg.Connection[tuple[Any, ...]]:
    """
    A new autocommit connection to C{uri}, named C{name} in
    C{pg_stat_activity}, which gives up on a silent server (L{_TIMEOUTS}),
    whose commits wait for the WAL flush (C{synchronous_commit=on},
    whatever the server or role says: an acknowledged append must survive
    a crash of the database).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(uri)
    conninfo = make_conninfo(uri, **{key: value for key, value in _TIMEOUTS.items() if key not in given})
    connection = psycopg.connect(conninfo, autocommit=True, application_name=name)
    connection.execute("SET synchronous_commit = on")
    return connection
