"""
oauthctl: socket discovery and diagnostics, usage errors, password input and
output formats, and every command round-tripping over a real UNIX socket
(the daemon's control factory on the test reactor, oauthctl in a thread).
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from oauthd import __version__
from oauthd.ctl import cli, commands, connection, output
from oauthd.protocol import tokens
from oauthd.protocol.admin.clients import update_client
from oauthd.protocol.errors import InvalidValue
from oauthd.control.peer import PeerCredentials, socket_peer_credentials
from oauthd.control.server import ControlFactory
from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from oauthd.testing import SteppingPool
from tests.test_control import Harness, command_box, issue_many


def the_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(
    environ: dict[str, str] | None = None, stdin: str = "", passwords: list[str] | None = None,
    tty: bool = False,
) -> Terminal:
    answers = list(passwords or [])
    return Terminal(
        stdin=TTY(stdin) if tty else io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(),
        environ=environ or {}, getpass=lambda prompt: answers.pop(0),
    )


def run(*argv: str, term: Terminal | None = None) -> Result:
    term = term or terminal({"OAUTHD_SOCKET": "/nonexistent/control.sock"})
    code = main(list(argv), term)
    return Result(code, term.stdout.getvalue(), term.stderr.getvalue())  # type: ignore[attr-defined]


class Live:
    """
    A control factory on a real socket in a temporary directory, with the
    kernel's peer credentials; L{ctl} runs oauthctl's main in a thread.
    """

    def __init__(self, tmp_path: Path, harness: Harness | None = None, **factory: Any) -> None:
        self.harness = harness or Harness()
        self.server = self.harness.server
        self.factory = ControlFactory(self.harness.clock, self.server.store, self.server.ctx, **factory)
        self.path = tmp_path / "control.sock"
        self.port = the_reactor().listenUNIX(str(self.path), self.factory, mode=0o600)

    async def ctl(
        self, *argv: str, stdin: str = "", passwords: list[str] | None = None, tty: bool = False,
    ) -> Result:
        term = terminal({"OAUTHD_SOCKET": str(self.path)}, stdin, passwords, tty)
        code = await deferToThread(main, list(argv), term)
        return Result(code, term.stdout.getvalue(), term.stderr.getvalue())  # type: ignore[attr-defined]

    async def ok(self, *argv: str, **kwargs: Any) -> Result:
        result = await self.ctl(*argv, **kwargs)
        assert (result.code, result.err) == (0, ""), result
        return result

    async def stop(self) -> None:
        await self.port.stopListening()
        # Let the server side see the last client's hang-up.
        await deferLater(the_reactor(), 0.01, lambda: None)


# ---------------------------------------------------------------------------
# Finding the socket


def test_socket_discovery() -> None:
    """
    --socket wins over $OAUTHD_SOCKET, which wins over the daemon's default
    (the same rule as the daemon's default data directory).
    """
    env = {"OAUTHD_SOCKET": "/env/c.sock", "STATE_DIRECTORY": "/var/lib/oauthd"}
    assert connection.socket_path("/opt/c.sock", env) == "/opt/c.sock"
    assert connection.socket_path(None, env) == "/env/c.sock"
    assert connection.socket_path(None, {"STATE_DIRECTORY": "/var/lib/oauthd"}) == "/var/lib/oauthd/control.sock"
    assert connection.socket_path(None, {}) == "./oauthd-data/control.sock"
    assert connection.socket_path(r"unix:/run/a\:b/c.sock:mode=600", {}) == "/run/a:b/c.sock"


def test_cannot_connect_says_where_and_why(tmp_path: Path) -> None:
    """
    Each way of failing to connect is one line naming the path and the
    reason, exit status 1.
    """
    missing = tmp_path / "missing.sock"
    plain = tmp_path / "file"
    plain.write_text("")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    cases = {
        str(missing): "no such file (is oauthd running?",
        str(plain): "not a socket",
        str(stale): "connection refused (is oauthd running?)",
        str(plain / "x.sock"): "no such file (a parent is not a directory)",
        str(tmp_path / ("x" * 120)) + ".sock": None,
    }
    long_path = tmp_path / ("y" * 110)
    long_path.mkdir()
    cwd = os.getcwd()
    with socket.socket(socket.AF_UNIX) as s:
        os.chdir(long_path)
        try:
            s.bind("c.sock")
        finally:
            os.chdir(cwd)
    cases[str(long_path / "c.sock")] = "the path is too long for a socket"
    for path, why in cases.items():
        result = run("--socket", path, "status")
        assert result.code == 1 and result.out == ""
        assert result.err.startswith(f"oauthctl: cannot connect to {path}: ")
        assert result.err.count("\n") == 1
        if why:
            assert why in result.err, result.err


def test_permission_denied_is_named(tmp_path: Path) -> None:
    assert "permission denied" in connection._why(PermissionError(errno.EACCES, "Permission denied"))
    if os.getuid() == 0:
        return  # root is never denied; the mapping above is what a user sees
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    try:
        result = run("--socket", str(locked / "c.sock"), "status")
    finally:
        locked.chmod(0o700)
    assert "permission denied" in result.err


# ---------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["clients"],
        ["clients", "add"],
        ["clients", "add", "--name", "x", "--expires", "soon"],
        ["clients", "mod", "cabc"],
        ["users", "mod", "bob"],
        ["users", "add", "bob", "--role", "king"],
        ["auth", "add", "--name", "x"],
        ["auth", "add", "--name", "x", "--scope", "*", "--user", "a", "--client", "c"],
        ["auth", "add", "--name", "x", "--scope", "*", "--expires", "-5"],
        ["auth", "ls", "a", "b"],
        ["repair"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    """
    A wrong command line prints usage and the error, exits 2, and never
    connects (the socket here does not exist).
    """
    result = run(*argv)
    assert result.code == 2, result
    assert "error:" in result.err and "cannot connect" not in result.err


def test_version_and_help() -> None:
    result = run("--version")
    assert (result.code, result.out) == (0, f"oauthctl {__version__}\n")
    result = run("auth", "add", "--help")
    assert result.code == 0 and "--scope" in result.out and "one year" in result.out


def test_password_input() -> None:
    """
    --password-stdin reads one line; otherwise the password is asked twice
    at a terminal, and must match.
    """
    args = cli.build_parser().parse_args(["users", "add", "bob", "--password-stdin"])
    assert commands.read_password(args, terminal(stdin="s3cret pass\nrest\n")) == "s3cret pass"
    with pytest.raises(connection.CtlError, match="no password on standard input"):
        commands.read_password(args, terminal(stdin=""))
    args = cli.build_parser().parse_args(["users", "add", "bob"])
    assert commands.read_password(args, terminal(passwords=["abcdefgh", "abcdefgh"], tty=True)) == "abcdefgh"
    with pytest.raises(connection.CtlError, match="do not match"):
        commands.read_password(args, terminal(passwords=["abcdefgh", "abcdefgX"], tty=True))
    with pytest.raises(connection.CtlError, match="use --password-stdin"):
        commands.read_password(args, terminal(passwords=["abcdefgh", "abcdefgh"]))


def test_formatting() -> None:
    assert output.table(["A", "Long header"], [["xxxx", 1], ["y", "two"]]).splitlines() == [
        "A     Long header",
        "xxxx  1",
        "y     two",
    ]
    assert output.table(["A"], [["bell\x07"]]).splitlines()[1] == "bell?"
    assert output.duration(3600) == "1h" and output.duration(90061) == "1d1h" and output.duration(0) == "0s"
    assert output.utc(0) == "never" and output.utc(1_800_000_000) == "2027-01-15 08:00:00"
    assert output.size(24) == "24 B" and output.size(3 << 20) == "3.0 MiB"
    assert output.boxed(["Access Token", "Scope"], ["abc", "*"]).splitlines() == [
        "+--------------+-------+",
        "| Access Token | Scope |",
        "+--------------+-------+",
        "| abc          | *     |",
        "+--------------+-------+",
    ]


# ---------------------------------------------------------------------------
# Over a real socket


@pytest_twisted.ensureDeferred
async def test_every_command_round_trips(tmp_path: Path) -> None:
    """
    Every command, in human and JSON form, over a real socket; each change
    is in the daemon's state when the command returns.
    """
    live = Live(tmp_path)
    server = live.server
    try:
        status = (await live.ok("status", "--json")).json()
        assert status["clients"] == 0 and status["live_fraction"] == 1.0
        assert "Live Tokens" in (await live.ok("status")).out

        added = await live.ok(
            "clients", "add", "--name", "backup", "--scope", "photos albums", "--grant",
            "client_credentials", "--expires", "600", "--tokens", "3", "--redirect-uri",
            "https://app.example/cb",
        )
        assert "AS YOU WILL NOT BE ABLE TO SEE IT AGAIN" in added.out
        client_id = list(server.state.clients)[0]
        secret = added.out.split(client_id)[-1].split("|")[1].strip()
        assert server.authenticate_client(client_id, secret) is not None
        public = (await live.ok("--json", "clients", "add", "--name", "spa", "--public",
                                "--grant", "authorization_code")).json()
        assert public["secret"] == "" and public["type"] == "public"

        listing = await live.ok("clients", "ls")
        lines = listing.out.splitlines()
        assert lines[0].startswith("Client ID") and len(lines) == 3
        assert lines[1].index("backup") == lines[0].index("Name")
        assert [r["name"] for r in (await live.ok("clients", "ls", "sp", "--json")).json()] == ["spa"]
        shown = (await live.ok("clients", "show", client_id, "--json")).json()
        assert shown["redirect_uris"] == ["https://app.example/cb"] and shown["max_tokens"] == 3
        assert "Access Token Lifetime   10m; up to 3 tokens" in (await live.ok("clients", "show", client_id)).out

        modified = await live.ok("clients", "mod", client_id, "--scope", "photos", "--regenerate-secret")
        assert "NEW CLIENT SECRET" in modified.out
        assert server.authenticate_client(client_id, secret) is None
        assert server.state.clients[client_id].scope == "photos"

        await live.ok("users", "add", "alice", "--role", "admin", "--email", "a@example.com",
                      "--password-stdin", stdin="correct horse\n")
        await live.ok("users", "add", "bob", "--full-name", "Bob B", passwords=["battery staple"] * 2, tty=True)
        users = (await live.ok("users", "ls", "--json")).json()
        assert [(u["name"], u["role"]) for u in users] == [("alice", "admin"), ("bob", "user")]
        assert "Bob B" in (await live.ok("users", "ls")).out
        assert (await live.ok("users", "show", "alice", "--json")).json()["email"] == "a@example.com"
        assert "Changed the password of bob" in (
            await live.ok("users", "passwd", "bob", "--password-stdin", stdin="new password\n")
        ).out
        assert (await live.ok("users", "mod", "bob", "--role", "admin", "--json")).json()["role"] == "admin"

        app = await live.ok("auth", "add", "--user", "alice", "--name", "phone", "--scope", "*", "--expires", "-1")
        assert "APP PASSWORD" in app.out and "NOT BE ABLE TO SEE IT AGAIN" in app.out
        app_password = app.out.split("| *")[0].rsplit("|", 1)[1].strip()
        assert tokens.is_app_password(app_password)
        assert server.authenticate_token(app_password) is not None
        bound = (await live.ok("auth", "add", "--client", client_id, "--name", "job", "--scope",
                               "photos", "--json")).json()
        assert bound["client_name"] == "backup" and bound["expires_at"] > bound["issued_at"]
        table = (await live.ok("auth", "ls")).out.splitlines()
        assert table[0].startswith("Session ID") and len(table) == 3
        assert "Client (OAuth2)" in "\n".join(table) and "App Password" in "\n".join(table)
        assert [r["label"] for r in (await live.ok("auth", "ls", "alice", "--json")).json()] == ["phone"]
        assert (await live.ok("auth", "show", app_password, "--json")).json()["user"] == "alice"
        shown = (await live.ok("auth", "show", app_password)).out
        assert "App Password" in shown and "Expires At (UTC)  never" in shown

        disabled = await live.ok("users", "mod", "alice", "--disable")
        assert "Revoked 1 tokens of the disabled user" in disabled.out
        assert server.authenticate_token(app_password) is None
        assert "Deleted user bob" in (await live.ok("users", "rm", "bob", "-y")).out

        removed = (await live.ok("clients", "rm", client_id, "-y", "--json")).json()
        assert removed["revoked"] == 1
        assert server.authenticate_token(bound["secret"]) is None

        compacted = await live.ok("compact")
        assert compacted.out.startswith("Compacted the journal: ")
        assert (await live.ok("status", "--json")).json()["live_fraction"] == 1.0
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_auth_add_then_rm(tmp_path: Path) -> None:
    """
    A token issued with auth add is accepted by the same check the HTTP
    edge makes; after auth rm returns, it is refused.
    """
    live = Live(tmp_path)
    try:
        issued = (await live.ok("auth", "add", "--name", "ci", "--scope", "metrics", "--json")).json()
        secret = issued["secret"]
        assert tokens.is_access_token(secret)
        token = live.server.authenticate_token(secret)
        assert token is not None and token.scope == "metrics"
        assert issued["expires_at"] - issued["issued_at"] == cli.DEFAULT_TOKEN_LIFETIME
        revoked = await live.ok("auth", "rm", secret)
        assert revoked.out == f"Revoked {issued['handle']}.\n"
        assert live.server.authenticate_token(secret) is None
        again = await live.ctl("auth", "rm", secret)
        assert again.code == 1
        assert again.err == "oauthctl: no such token: no live token has that handle, secret or session id\n"
        assert secret not in again.err
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_clients_rm_revokes_and_asks_first(tmp_path: Path) -> None:
    """
    clients rm asks for confirmation (anything but yes changes nothing) and
    then deletes the client and revokes every token it holds.
    """
    live = Live(tmp_path)
    try:
        client_id = (await live.ok("clients", "add", "--name", "c", "--json")).json()["id"]
        secrets = [
            (await live.ok("auth", "add", "--client", client_id, "--name", f"t{i}", "--scope", "*",
                           "--json")).json()["secret"]
            for i in range(3)
        ]
        refused = await live.ctl("clients", "rm", client_id, stdin="n\n")
        assert refused.code == 1 and "nothing was changed" in refused.err
        assert live.server.state.clients[client_id]
        removed = await live.ctl("clients", "rm", client_id, stdin="yes\n")
        assert removed.code == 0
        assert removed.err == f"Delete client {client_id} and revoke all its tokens? [y/N] "
        assert removed.out == f"Deleted client {client_id} (c); revoked 3 tokens.\n"
        assert all(live.server.authenticate_token(s) is None for s in secrets)
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_auth_add_uses(tmp_path: Path) -> None:
    """
    auth add --uses N issues an initial access token allowing N
    registrations; --uses is refused for any other token, and out of range.
    """
    live = Live(tmp_path)
    try:
        issued = (await live.ok("auth", "add", "--name", "frames", "--scope", "register", "--uses", "2",
                                "--json")).json()
        token = live.server.authenticate_token(issued["secret"])
        assert token is not None and not token.client_id and not token.user
        assert live.server.ctx.state.uses.left(token.key) == 2
        for argv in (["--scope", "photos"], ["--scope", "register", "--user", "alice"],
                     ["--scope", "register", "--uses", "0"], ["--scope", "register", "--uses", "1001"]):
            if "--uses" not in argv:
                argv += ["--uses", "2"]
            before = live.server.ctx.state.token_count()
            result = await live.ctl("auth", "add", "--name", "x", *argv)
            assert result.code == 1 and result.err.startswith("oauthctl: "), result
            assert live.server.ctx.state.token_count() == before
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_errors_are_one_line(tmp_path: Path) -> None:
    live = Live(tmp_path)
    try:
        for argv, message in [
            (["clients", "show", "cnope"], "oauthctl: no such client: cnope\n"),
            (["users", "rm", "ghost", "-y"], "oauthctl: no such user: ghost\n"),
            (["auth", "add", "--name", "x", "--scope", "bogus"], "oauthctl: unknown scope 'bogus'\n"),
            (["auth", "show", "sess0000000000"], "oauthctl: no such token: sess0000000000\n"),
            (["users", "add", "eve", "--password-stdin"], "oauthctl: passwords have at least 8 characters\n"),
        ]:
            result = await live.ctl(*argv, stdin="short\n")
            assert (result.code, result.out, result.err) == (1, "", message)
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_refused_uid_over_a_real_socket(tmp_path: Path) -> None:
    """
    A peer the daemon does not admit (the kernel's credentials, with the uid
    swapped for a stranger's) is disconnected; oauthctl says so in one line.
    """

    def stranger(transport: Any) -> PeerCredentials | None:
        real = socket_peer_credentials(transport)
        assert real is not None and real.pid == os.getpid()
        return attrs.evolve(real, uid=31337)

    live = Live(tmp_path, peer_credentials=stranger)
    try:
        result = await live.ctl("status")
        assert result.code == 1
        assert result.err.startswith(f"oauthctl: {live.path}: the daemon closed the connection")
        assert result.err.count("\n") == 1
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_hostile_clients_on_a_real_socket(tmp_path: Path) -> None:
    """
    A client sending an oversized key is cut off; one that hangs up while
    its password is hashed creates nothing; oauthctl works throughout.
    """
    reactor = the_reactor()
    pool = SteppingPool()
    live = Live(tmp_path, Harness(pool=pool))
    try:
        with socket.socket(socket.AF_UNIX) as rogue:
            rogue.connect(str(live.path))
            rogue.sendall(struct.pack("!H", 300) + b"x" * 300)
            rogue.settimeout(5)
            assert await deferToThread(rogue.recv, 100) == b""

        with socket.socket(socket.AF_UNIX) as quitter:
            quitter.connect(str(live.path))
            quitter.sendall(command_box(b"AddUser", name=b"ghost", password=b"long enough"))
            for _ in range(200):
                if pool.jobs:
                    break
                await deferLater(reactor, 0.005, lambda: None)
            assert len(pool.jobs) == 1
        await deferLater(reactor, 0.05, lambda: None)
        pool.run_all()
        assert sorted(live.server.state.users) == []

        assert (await live.ok("status", "--json")).json()["users"] == 0
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_listing_100000_tokens(tmp_path: Path) -> None:
    """
    auth ls over 100,000 tokens pages through all of them, each once, in
    issue order, a line each; -n stops early.
    """
    live = Live(tmp_path)
    handles: list[str] = []
    started = time.perf_counter()
    for _ in range(10):
        handles += issue_many(live.server, 10_000)
    print(f"\nissued 100,000 tokens in {time.perf_counter() - started:.2f} s")
    try:
        started = time.perf_counter()
        table = (await live.ok("auth", "ls")).out.splitlines()
        print(f"oauthctl auth ls: 100,000 tokens in {time.perf_counter() - started:.2f} s")
        assert table[0].startswith("Session ID")
        assert [line.split(" ", 1)[0] for line in table[1:]] == handles
        limited = (await live.ok("auth", "ls", "-n", "1500", "--json")).json()
        assert [r["handle"] for r in limited] == handles[:1500]
    finally:
        await live.stop()


def test_repair_runs_the_repair_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    repair runs the journal's repair as its own process and prints its
    description, or with --json its report; its error is one line, exit
    status 1; so is a repair that breaks or answers nonsense.
    """
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    monkeypatch.setattr(commands, "REPAIR", "tests.repair_double")
    sound = run("repair", "--data", "/data/sound")
    assert (sound.code, sound.out, sound.err) == (0, "/data/sound: no damage found\n", "")
    report = run("repair", "--data", "/data/sound", "--json")
    assert report.code == 0 and report.json() == {
        "journal": "/data/sound/journal.oauthd", "kept_records": 3, "skipped_bytes": 0,
        "damaged_regions": 0, "header_damaged": False, "damaged_copy": None,
    }
    assert list(report.json()) == ["journal", "kept_records", "skipped_bytes", "damaged_regions",
                                   "header_damaged", "damaged_copy"]
    refused = run("repair", "--data", "/data/refused")
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == "oauthctl: /data/refused is locked: is oauthd running?\n"
    broken = run("repair", "--data", "/data/crash")
    assert broken.code == 1 and broken.err == "oauthctl: the repair failed: RuntimeError: the repair broke\n"
    nonsense = run("repair", "--data", "/data/nonsense")
    assert nonsense.code == 1 and nonsense.err.startswith("oauthctl: the repair failed: ")


def test_repair(tmp_path: Path) -> None:
    """
    repair --data works offline: it reports a sound journal untouched, cuts
    a damaged record out (keeping the damaged file), and refuses, in one
    line, while a daemon holds the journal.
    """
    from oauthd.eventlog import HEADER_SIZE, RECORD_OVERHEAD
    from tests.journal_doubles import open_inline, read_journal

    data = tmp_path / "data"
    journal = open_inline(str(data))
    journal.append([b"first record", b"second record", b"third record"])
    journal.close()
    sound = run("repair", "--data", str(data))
    assert sound.code == 0 and "no damage found; 3 records verified" in sound.out

    with open(data / "journal.oauthd", "r+b") as f:
        f.seek(HEADER_SIZE + RECORD_OVERHEAD + len(b"first record") + RECORD_OVERHEAD + 2)
        f.write(b"X")
    repaired = run("repair", "--data", str(data), "--json")
    assert repaired.code == 0, repaired
    report = repaired.json()
    assert report["kept_records"] == 2 and report["damaged_copy"]
    assert read_journal(str(data)) == [b"first record", b"third record"]

    running = open_inline(str(data))
    try:
        locked = run("repair", "--data", str(data))
    finally:
        running.close()
    assert locked.code == 1 and locked.err.startswith("oauthctl: ") and locked.err.count("\n") == 1
    missing = run("repair", "--data", str(tmp_path / "nowhere"))
    assert missing.code == 1 and "no journal" in missing.err
    # A directory named like an option is a directory, and nothing in the
    # directory oauthctl runs in is imported (root may run it anywhere).
    dashed = run("repair", "--data=-h")
    assert dashed.code == 1 and "no journal" in dashed.err
    trap = tmp_path / "trap" / "oauthd"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise SystemExit('imported from the working directory')\n")
    here = os.getcwd()
    os.chdir(trap.parent)
    try:
        trapped = run("repair", "--data", str(data))
    finally:
        os.chdir(here)
    assert trapped.code == 0 and "no damage found" in trapped.out


@pytest_twisted.ensureDeferred
async def test_openid_settings_round_trip(tmp_path: Path) -> None:
    """
    The OpenID Connect settings of users (name, verified email, address;
    the subject id shown) and clients (JWT access tokens, audiences, the ID
    token's algorithm and claims) over a real socket.
    """
    live = Live(tmp_path)
    server = live.server
    try:
        added = (await live.ok("--json", "users", "add", "carol", "--name", "Carol C", "--email",
                               "c@example.com", "--email-verified", "--address", "1 Main St",
                               "--password-stdin", stdin="correct horse\n")).json()
        carol = server.state.users["carol"]
        assert (added["uid"], added["full_name"], added["email_verified"], added["address"]) == (
            carol.uid, "Carol C", True, "1 Main St")
        await live.ok("users", "mod", "carol", "--email-unverified", "--address", "")
        carol = server.state.users["carol"]
        assert (carol.email_verified, carol.address, carol.uid) == (False, "", added["uid"])

        client = (await live.ok(
            "--json", "clients", "add", "--name", "rp", "--grant", "authorization_code",
            "--jwt-access-tokens", "--audience", "https://a.example", "--audience", "https://b.example",
            "--id-token-alg", "EdDSA", "--id-token-claims",
        )).json()
        held = server.state.clients[client["id"]]
        assert (held.jwt_access_tokens, held.audience, held.id_token_signed_response_alg,
                held.id_token_claims) == (True, ("https://a.example", "https://b.example"), "EdDSA", True)
        await live.ok("clients", "mod", client["id"], "--no-jwt-access-tokens", "--no-id-token-claims")
        held = server.state.clients[client["id"]]
        assert (held.jwt_access_tokens, held.id_token_claims) == (False, False)
        refused = await live.ctl("clients", "mod", client["id"], "--id-token-alg", "HS256")
        assert refused.code == 2
        # Past oauthctl's own checks, the daemon's.
        for bad in ({"id_token_signed_response_alg": "none"}, {"audience": ("not a uri",)}):
            with pytest.raises(InvalidValue):
                update_client(server.ctx, client["id"], **bad)
        assert server.state.clients[client["id"]] == held
    finally:
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_clients_secret_and_a_registration_token(tmp_path: Path) -> None:
    """
    clients secret issues a new secret, as mod --regenerate-secret does;
    auth add --scope register issues an initial access token owned by no
    client or user, and a registered client shows how it was made.
    """
    live = Live(tmp_path)
    try:
        added = (await live.ok("--json", "clients", "add", "--name", "backup")).json()
        renewed = await live.ok("clients", "secret", added["id"])
        assert "NEW CLIENT SECRET" in renewed.out
        assert live.server.authenticate_client(added["id"], added["secret"]) is None
        issued = (await live.ok("auth", "add", "--name", "onboarding", "--scope", "register", "--json")).json()
        token = live.server.authenticate_token(issued["secret"])
        assert token is not None and (token.scope, token.client_id, token.user) == ("register", "", "")
        shown = (await live.ok("clients", "show", added["id"], "--json")).json()
        assert shown["created_by"] == "admin"
    finally:
        await live.stop()
