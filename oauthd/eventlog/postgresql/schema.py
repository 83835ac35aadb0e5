"""
The shared log's schema: versioned SQL files shipped in the package
(C{schema/v1.sql} creates version 1; each C{schema/upgrade-<n>-to-<n+1>.sql}
takes it one version further, in a new database as in an old one), applied by the daemon at start under an advisory lock, so
nodes starting together do it once.  A database whose schema is newer than
this oauthd knows is refused: an older daemon must not write records or
rows it does not understand.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from oauthd.eventlog.errors import SchemaTooNew

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "ensure_schema", "schema_version"]

SCHEMA_VERSION = 2
"""
The schema version this oauthd creates and knows.
"""

SCHEMA_LOCK = 0x6F61757468640001
"""
The advisory lock key held while the schema is created or upgraded.
"""


def _sql(name: str) -> str:
    return resources.files(__package__).joinpath("schema", name).read_text()


def schema_version(connection: psycopg.Connection[tuple[Any, ...]]) -> int:
    """
    The database's schema version; 0 if it has none yet.
    """
    if connection.execute("SELECT to_regclass('oauthd_schema')").fetchone() == (None,):
        return 0
    row = connection.execute("SELECT max(version) FROM oauthd_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def ensure_schema(connection: psycopg.Connection[tuple[Any, ...]], partition_size: int | None = None) -> int:
    """
    Create the schema in an empty database, or upgrade an older one.

    @param partition_size: positions per partition of a new log (tests make
        it small); an existing log keeps its own.
    @return: the version found before (0: created now).
    @raise SchemaTooNew: the database's schema is newer than
        L{SCHEMA_VERSION}; nothing is changed.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = schema_version(connection)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the event log's database has schema version {found}; this oauthd knows"
                f" version {SCHEMA_VERSION} at most: upgrade oauthd"
            )
        if found == 0:
            connection.execute(_sql("v1.sql"))
            if partition_size is not None:
                connection.execute("UPDATE oauthd_head SET partition_size = %s", (partition_size,))
        for version in range(found or 1, SCHEMA_VERSION):
            connection.execute(_sql(f"upgrade-{version}-to-{version + 1}.sql"))
            connection.execute("UPDATE oauthd_schema SET version = %s", (version + 1,))
    return found
