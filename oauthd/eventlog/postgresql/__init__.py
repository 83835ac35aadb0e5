"""
The event log shared by several oauthd daemons, in PostgreSQL.

Every node appends to one table of records with dense positions and follows
it, its own records included; claims decide single use across nodes in the
same statement as the records (L{oauthd.interfaces.Claim}).  The driver is
psycopg 3's synchronous API, on threads of the log's own (a writer, a
reader, a listener), reached from the reactor as the file journal's writer
is.  psycopg is an optional extra: this package imports it only when a log
is opened, so the rest of oauthd never needs it.

    - L{connection}: connecting (C{synchronous_commit=on}), and URIs
      without their password for logs;
    - L{schema}: the versioned schema files shipped beside it, created and
      upgraded by the daemon;
    - L{database}: the blocking side: the jobs of the writer and reader
      threads, and the listener thread;
    - L{log}: L{PostgresLog}, the reactor side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oauthd.eventlog.errors import DriverMissing
from oauthd.eventlog.postgresql.connection import is_postgres_uri, redact

if TYPE_CHECKING:
    from oauthd.eventlog.postgresql.log import PostgresLog

__all__ = ["is_postgres_uri", "open_postgres_log", "redact"]

EXTRA_HINT = "the PostgreSQL event log needs psycopg: pip install 'oauthd[postgresql]'"


def open_postgres_log(uri: str, reactor: Any, **options: Any) -> PostgresLog:
    """
    Open the shared log at C{uri} (see L{oauthd.eventlog.postgresql.opening.open_log}; blocking).

    @raise DriverMissing: psycopg is not installed (its message names the
        extra to install).
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise DriverMissing(EXTRA_HINT) from None
    from oauthd.eventlog.postgresql.opening import open_log

    return open_log(uri, reactor, **options)
