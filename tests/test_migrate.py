"""
C{oauthctl migrate}: a data directory's journal copied into an empty shared
log in PostgreSQL (C{--to}), and a shared log into an empty data directory
(C{--from}); a target that holds anything, or bad input, refused in one
line with nothing written.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from oauthd.eventlog import FileJournal
from oauthd.testing import InlinePool, InlineReactor, seed
from tests.postgres import fresh_database
from tests.test_shared_log import sql


def oauthctl(*argv: str) -> tuple[int, str, str]:
    term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    code = main(list(argv), term)
    return code, term.stdout.getvalue(), term.stderr.getvalue()  # type: ignore[attr-defined]


def payloads(directory: Path) -> list[bytes]:
    journal = FileJournal.open(str(directory), InlineReactor(), pool=InlinePool())  # type: ignore[arg-type]
    try:
        return list(journal.replay())
    finally:
        journal.close()


def seeded(directory: Path) -> list[bytes]:
    async def build(server: Any) -> None:
        await server.add_client("app")
        await server.add_user("alice", "correct horse battery staple")
        for _ in range(3):
            await server.issue_token(scope="*", lifetime=3600, label="t")

    seed(str(directory), time.time(), build)
    return payloads(directory)


def test_to_and_back(tmp_path: Path) -> None:
    """
    Every record of the journal goes to the shared log, sealed with the
    key given, and comes back the same into a new data directory.
    """
    uri = fresh_database()
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    records = seeded(tmp_path / "one")
    code, out, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri,
                              "--secret-key-file", str(key))
    assert code == 0, err
    assert out.startswith(f"copied {len(records)} records from {tmp_path / 'one'} to postgresql://")
    assert sql(uri, "SELECT count(*) FROM oauthd_log") == [(len(records),)]
    assert b"alice" not in b"".join(bytes(p) for (p,) in sql(uri, "SELECT payload FROM oauthd_log"))
    code, out, err = oauthctl("--json", "migrate", "--data", str(tmp_path / "two"), "--from", uri,
                              "--secret-key-file", str(key))
    assert code == 0, err
    assert json.loads(out)["records"] == len(records)
    assert payloads(tmp_path / "two") == records


def test_non_empty_targets_are_refused(tmp_path: Path) -> None:
    """
    A shared log, or a data directory, that holds records already is not
    written to.
    """
    uri = fresh_database()
    seeded(tmp_path / "one")
    assert oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri)[0] == 0
    code, out, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri)
    assert (code, out) == (1, "")
    assert err.startswith("oauthctl: postgresql:///") and "is not empty" in err and err.count("\n") == 1
    before = sql(uri, "SELECT count(*) FROM oauthd_log")
    code, _, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--from", uri)
    assert code == 1 and f"the journal in {tmp_path / 'one'} is not empty" in err
    assert sql(uri, "SELECT count(*) FROM oauthd_log") == before


def test_bad_input(tmp_path: Path) -> None:
    """
    No journal to copy, not a PostgreSQL URI, both directions or neither,
    a bad key file: each answered in one line.
    """
    uri = fresh_database()
    cases = [
        (["--data", str(tmp_path / "none"), "--to", uri], 1, "holds no journal (journal.oauthd) to copy"),
        (["--data", str(tmp_path), "--to", "mysql://x"], 1, "expected a postgresql:// URI"),
        (["--data", str(tmp_path), "--to", uri, "--from", uri], 2, "not allowed with argument"),
        (["--data", str(tmp_path)], 2, "one of the arguments --to --from is required"),
        (["--data", str(tmp_path / "new"), "--from", uri, "--secret-key-file", str(tmp_path / "nokey")], 1,
         "cannot read it: No such file"),
    ]
    for argv, status, message in cases:
        code, _, err = oauthctl("migrate", *argv)
        assert code == status and message in err, (argv, err)
        assert err.count("\n") == 1 or status == 2, err
    assert not (tmp_path / "new").exists()
