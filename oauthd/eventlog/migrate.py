"""
oauthctl's helper, not a command for people (they run C{oauthctl migrate}).

C{python -m oauthd.state.migration --data DIR (--to URI | --from URI)
[--secret-key-file PATH]} copies the data directory's journal into an empty
shared log in PostgreSQL (C{--to}), or a shared log into the empty journal
of a data directory (C{--from}), with oauthd stopped (the data directory's
lock is taken); a target that holds anything is refused, and nothing is
written to it.  It prints exactly one line of JSON: what was copied and a
C{description} (exit status 0), or C{{"error": ...}} (exit status 1).

The audit trail stays where it is: it is each node's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from oauthd.eventlog.errors import JournalError
from oauthd.eventlog.format import JOURNAL_NAME
from oauthd.eventlog.journal import FileJournal
from oauthd.eventlog.postgresql import is_postgres_uri, redact
from oauthd.interfaces import Claim, IEventLog

__all__ = ["BATCH", "main", "migrate"]

BATCH = 5000
"""
Records appended at once.
"""


class NotEmpty(JournalError):
    """
    The target of a migration holds records already.
    """


def _batches(payloads: Iterator[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for payload in payloads:
        batch.append(payload)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Seeding(Protocol):
    """
    What a copy into a shared log claims besides its records: the claims
    the nodes would have made had the records been appended there (a
    grant's current refresh token), read from the records as they pass.
    """

    def take(self, batch: Sequence[bytes]) -> None: ...

    def claims(self) -> Sequence[Claim]: ...


Kept = Callable[[Iterator[bytes], int], Iterator[bytes]]
"""
Of a shared log's records (the latest snapshot's, then their number, then
the log's after it), those its nodes applied: a journal's replay checks
nothing, and would take in what they dropped at its position.
"""


async def _copy(source: IEventLog, target: IEventLog, seeding: Seeding | None, kept: Kept | None = None) -> int:
    copied = 0
    held: list[bytes] | None = None
    records = source.replay()
    if kept is not None and source.snapshot_records is not None:
        records = kept(records, source.snapshot_records)
    for batch in _batches(records):
        if seeding is not None:
            seeding.take(batch)
        if held is not None:
            await target.append(held)
            copied += len(held)
        held = batch
    if held is not None:
        # The claims go with the last records: they are made with them or not at all.
        await target.append(held, seeding.claims() if seeding is not None else ())
        copied += len(held)
    return copied


async def migrate(reactor: Any, data: str, uri: str, to_shared: bool, key: bytes | None,
                  seeding: Seeding | None = None, kept: Kept | None = None) -> dict[str, object]:
    """
    Copy the journal in C{data} to the shared log at C{uri}, or back; into
    the shared log, with C{seeding}'s claims; back, what C{kept} keeps.

    @raise NotEmpty: the target holds records; nothing was written.
    @raise JournalError: either cannot be opened.
    """
    from oauthd.eventlog.postgresql import open_postgres_log

    if to_shared and not os.path.exists(os.path.join(data, JOURNAL_NAME)):
        raise JournalError(f"{data} holds no journal ({JOURNAL_NAME}) to copy")
    journal = FileJournal.open(data, reactor)
    try:
        shared = open_postgres_log(uri, reactor, node="oauthctl-migrate", listen=False, secret_key=key)
    except BaseException:
        await journal.close()
        raise
    source, target = (journal, shared) if to_shared else (shared, journal)
    try:
        if target.record_count or target.position:
            where = redact(uri) if to_shared else f"the journal in {data}"
            raise NotEmpty(f"{where} is not empty ({target.record_count} records): a migration only"
                           " fills an empty one")
        copied = await _copy(source, target, seeding if to_shared else None, None if to_shared else kept)
    finally:
        await shared.close()
        await journal.close()
    origin, destination = (data, redact(uri)) if to_shared else (redact(uri), data)
    return {"records": copied, "from": origin, "to": destination,
            "description": f"copied {copied} records from {origin} to {destination}"}


def _key(path: str | None) -> bytes | None:
    if path is None:
        return None
    from oauthd.eventlog.postgresql.sealing import read_key_file

    return read_key_file(path)


def main(argv: Sequence[str], seeding: Callable[[], Seeding] | None = None, kept: Kept | None = None) -> int:
    """
    Migrate as C{argv} says and print the JSON line; C{seeding} makes what
    a copy into a shared log claims, C{kept} keeps what a copy back copies.

    @return: the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m oauthd.eventlog.migrate",
        description="oauthctl's helper (use oauthctl migrate): copy a journal into an empty shared"
        " log, or back, and print the outcome as one line of JSON",
    )
    parser.add_argument("--data", metavar="DIR", required=True)
    way = parser.add_mutually_exclusive_group(required=True)
    way.add_argument("--to", metavar="URI")
    way.add_argument("--from", dest="source", metavar="URI")
    parser.add_argument("--secret-key-file", metavar="PATH")
    options = parser.parse_args(argv)
    uri = options.to or options.source
    if not is_postgres_uri(uri):
        print(json.dumps({"error": "expected a postgresql:// URI"}))
        return 1
    if options.to and not options.secret_key_file:
        print(json.dumps({"error": "--secret-key-file is needed with --to: the shared log's records are"
                                   " encrypted with the nodes' eventlog_secret_key_file"}))
        return 1
    outcome: dict[str, object] = {}

    async def run(reactor: Any) -> None:
        try:
            key = _key(options.secret_key_file)
            seeds = seeding() if seeding is not None else None
            outcome.update(await migrate(reactor, options.data, uri, options.to is not None, key, seeds, kept))
        except (JournalError, OSError) as e:
            outcome["error"] = " ".join(str(e).split())

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    try:
        react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            outcome.setdefault("error", f"the migration stopped (exit status {e.code})")
    print(json.dumps(outcome))
    return 1 if "error" in outcome else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
