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


def connect(uri: str, name: str) -> psycopg.Connection[tuple[Any, ...]]:
    """
    A new autocommit connection to C{uri}, named C{name} in
    C{pg_stat_activity}, whose commits wait for the WAL flush
    (C{synchronous_commit=on}, whatever the server or role says: an
    acknowledged append must survive a crash of the database).
    """
    import psycopg

    connection = psycopg.connect(uri, autocommit=True, application_name=name)
    connection.execute("SET synchronous_commit = on")
    return connection
