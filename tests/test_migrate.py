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


def key_file(directory: Path) -> str:
    key = directory / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    return str(key)


def test_to_and_back(tmp_path: Path) -> None:
    """
    Every record of the journal goes to the shared log, sealed with the
    key given, and comes back the same into a new data directory.
    """
    uri = fresh_database()
    key = key_file(tmp_path)
    records = seeded(tmp_path / "one")
    code, out, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri,
                              "--secret-key-file", key)
    assert code == 0, err
    assert out.startswith(f"copied {len(records)} records from {tmp_path / 'one'} to postgresql://")
    assert sql(uri, "SELECT count(*) FROM oauthd_log") == [(len(records),)]
    assert b"alice" not in b"".join(bytes(p) for (p,) in sql(uri, "SELECT payload FROM oauthd_log"))
    code, out, err = oauthctl("--json", "migrate", "--data", str(tmp_path / "two"), "--from", uri,
                              "--secret-key-file", key)
    assert code == 0, err
    assert json.loads(out)["records"] == len(records)
    assert payloads(tmp_path / "two") == records


def test_non_empty_targets_are_refused(tmp_path: Path) -> None:
    """
    A shared log, or a data directory, that holds records already is not
    written to.
    """
    uri = fresh_database()
    key = key_file(tmp_path)
    seeded(tmp_path / "one")
    assert oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri, "--secret-key-file", key)[0] == 0
    code, out, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri, "--secret-key-file", key)
    assert (code, out) == (1, "")
    assert err.startswith("oauthctl: postgresql:///") and "is not empty" in err and err.count("\n") == 1
    before = sql(uri, "SELECT count(*) FROM oauthd_log")
    code, _, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--from", uri, "--secret-key-file", key)
    assert code == 1 and f"the journal in {tmp_path / 'one'} is not empty" in err
    assert sql(uri, "SELECT count(*) FROM oauthd_log") == before


def test_bad_input(tmp_path: Path) -> None:
    """
    No journal to copy, not a PostgreSQL URI, both directions or neither,
    a bad key file: each answered in one line.
    """
    uri = fresh_database()
    key = key_file(tmp_path)
    cases = [
        (["--data", str(tmp_path / "none"), "--to", uri, "--secret-key-file", key], 1,
         "holds no journal (journal.oauthd) to copy"),
        (["--data", str(tmp_path), "--to", uri], 1, "--secret-key-file is needed with --to"),
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


def test_migrated_grant_rotates_once(tmp_path: Path) -> None:
    """
    A refresh grant made on the journal, migrated, rotates on a daemon
    over the shared log (its current token's claim came with the copy, so
    the rotation is not taken for a reuse), and its old token replayed
    there revokes the family.
    """
    from tests.test_multinode_postgres import post

    client, (issued,), shared = _migrated_grant(tmp_path, rotations=0)
    try:
        old = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
        code, rotated = post(shared, "/api/v1/oauth/token", old, client)
        assert code == 200, rotated
        code, replayed = post(shared, "/api/v1/oauth/token", old, client)
        assert (code, replayed["error"]) == (400, "invalid_grant"), replayed
        new = {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
        code, refused = post(shared, "/api/v1/oauth/token", new, client)
        assert (code, refused["error"]) == (400, "invalid_grant"), refused
    finally:
        assert shared.stop() == 0, shared.output()


def test_a_grant_rotated_on_the_journal_rotates_on_once(tmp_path: Path) -> None:
    """
    A grant rotated on the journal (a rotation record there) and migrated
    rotates on from its current refresh token on a daemon over the shared
    log, whose nodes replayed the rotation record from it; the token that
    rotation used is a reuse there, which revokes the family.
    """
    from tests.test_multinode_postgres import post

    client, (issued, current), shared = _migrated_grant(tmp_path, rotations=1)
    try:
        on = {"grant_type": "refresh_token", "refresh_token": current["refresh_token"]}
        code, rotated = post(shared, "/api/v1/oauth/token", on, client)
        assert code == 200, rotated
        used = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
        code, reused = post(shared, "/api/v1/oauth/token", used, client)
        assert (code, reused["error"]) == (400, "invalid_grant"), reused
        assert "already used" in reused["error_description"], reused
        latest = {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
        code, revoked = post(shared, "/api/v1/oauth/token", latest, client)
        assert (code, revoked["error"]) == (400, "invalid_grant"), revoked
    finally:
        assert shared.stop() == 0, shared.output()


def _migrated_grant(tmp_path: Path, rotations: int) -> tuple[tuple[str, str], list[dict[str, Any]], Any]:
    """
    A password grant made on a journal and rotated C{rotations} times there,
    the journal migrated into a fresh shared log: the client's id and
    secret, each token answer in order, and a daemon started over the log.
    """
    from tests.daemon import Daemon
    from tests.postgres import shared_log_options
    from tests.test_multinode_postgres import PASSWORD as ALICE, ctl, post

    uri = fresh_database()
    journal = Daemon(tmp_path / "one")
    try:
        ctl(journal, "users", "add", "alice", "--password-stdin", stdin=ALICE + "\n")
        added = ctl(journal, "clients", "add", "--name", "app", "--grant", "password",
                    "--grant", "refresh_token", "--json")
        client = (added["id"], added["secret"])
        code, answer = post(journal, "/api/v1/oauth/token",
                            {"grant_type": "password", "username": "alice", "password": ALICE}, client)
        assert code == 200, answer
        answers = [answer]
        for _ in range(rotations):
            code, answer = post(journal, "/api/v1/oauth/token",
                                {"grant_type": "refresh_token", "refresh_token": answer["refresh_token"]}, client)
            assert code == 200, answer
            answers.append(answer)
    finally:
        assert journal.stop() == 0, journal.output()
    assert sum(p.startswith(b"rot\t") for p in payloads(tmp_path / "one")) == rotations
    options = shared_log_options(tmp_path, uri)  # writes the log's key file
    key = str(tmp_path / "eventlog.key")
    code, _, err = oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri, "--secret-key-file", key)
    assert code == 0, err
    return client, answers, Daemon(tmp_path / "two", *options)


def test_back_as_the_nodes_hold_it(tmp_path: Path) -> None:
    """
    A record the nodes dropped at its position in the shared log (a user
    name another node took first) is not copied back into a journal, whose
    replay would take it in; a token the nodes took in over its client's
    limit (raced on two nodes) goes back with the revocation that made room
    for it: the journal holds what the nodes held.
    """
    from oauthd.eventlog.postgresql import open_postgres_log
    from oauthd.eventlog.postgresql.sealing import read_key_file
    from oauthd.state.follower import replayed
    from oauthd.state.entities import Token, User
    from oauthd.state.model import State, replay
    from oauthd.state.records import TokenIssued, UserPut, encode

    async def build(server: Any) -> Any:
        limited, _ = await server.add_client("limited", max_tokens=1)
        _, token = await server.issue_token(scope="*", lifetime=3600, client=limited)
        carol = await server.add_user("carol")
        return token, carol

    now = time.time()
    held, carol = seed(str(tmp_path / "one"), now, build)
    uri = fresh_database()
    key = key_file(tmp_path)
    assert oauthctl("migrate", "--data", str(tmp_path / "one"), "--to", uri, "--secret-key-file", key)[0] == 0
    raced = Token(held.key + 1, held.kind, held.client_id, "", held.scope, held.issued_at, 3600, "", "")
    taken = User("carol", uid=carol.uid[:-1] + ("b" if carol.uid[-1] != "b" else "c"))
    log = open_postgres_log(uri, InlineReactor(), pool=InlinePool(), listen=False, secret_key=read_key_file(key))
    log.append([encode(TokenIssued(raced)), encode(UserPut(taken))])
    log.close()
    nodes = open_postgres_log(uri, InlineReactor(), pool=InlinePool(), listen=False, secret_key=read_key_file(key))
    on_the_nodes = replayed(nodes, now)
    nodes.close()
    assert sorted(on_the_nodes.tokens) == [raced.key]
    assert on_the_nodes.users["carol"].uid == carol.uid
    code, _, err = oauthctl("migrate", "--data", str(tmp_path / "two"), "--from", uri, "--secret-key-file", key)
    assert code == 0, err
    back = State()
    replay(back, payloads(tmp_path / "two"), now)
    assert sorted(back.tokens) == [raced.key]
    assert back.users["carol"].uid == carol.uid
