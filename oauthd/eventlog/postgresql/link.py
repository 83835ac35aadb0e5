"""
One connection of the shared log's threads: made when first needed, and
again after it broke, with PostgreSQL's errors turned into the log's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from attrs import define

from oauthd.eventlog.errors import LogUnavailable
from oauthd.eventlog.postgresql.connection import connect, redact

__all__ = ["Connection", "Link", "one_line"]

Connection = psycopg.Connection[tuple[Any, ...]]


def one_line(error: Exception) -> str:
    # libpq's messages run over several lines; ours are one.
    return " ".join(str(error).split())


@define
class Link:
    """
    One connection, made when first needed and again after it broke.
    """

    uri: str
    name: str
    _connection: Connection | None = None
    _on_connect: Callable[[Connection], None] | None = None

    def get(self) -> Connection:
        connection = self._connection
        if connection is None or connection.closed:
            self._connection = None
            try:
                connection = connect(self.uri, self.name)
            except psycopg.Error as e:
                raise LogUnavailable(f"cannot reach the event log at {redact(self.uri)}: {one_line(e)}") from None
            if self._on_connect is not None:
                self._on_connect(connection)
            self._connection = connection
        return connection

    def broken(self, error: psycopg.Error) -> LogUnavailable:
        """
        Drop the connection after C{error}; what to fail with.
        """
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return LogUnavailable(f"the event log at {redact(self.uri)} failed: {one_line(error)}")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
