"""
The control socket's protocol, in memory: the peer gate, every command's
round trip and errors, hostile input, disconnects mid-command, paging and
the listener's permissions.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from oauthd import __version__
from oauthd.control import errors, listen, paging, peer, responders, wire
from oauthd.control import server as control
from oauthd.control.wire import BadArgument, Busy, Conflict, InvalidValue, NotFound, StorageError

from oauthd.protocol import rules, tokens
from oauthd.testing import MemoryServer
from oauthd.config import ConfigError, build_config
from oauthd.control.peer import PeerCredentials
from oauthd.control.server import ControlFactory, ControlProtocol
from oauthd.services.hashing import PasswordHasher
from oauthd.eventlog import MemoryJournal
from oauthd.protocol.issuing import mint
from oauthd.state.entities import ACCESS, APP_PASSWORD, Client
from oauthd.state.records import ClientPut
from oauthd.state.store import Store
from tests.helpers import START, change, make_server, make_config
from oauthd.testing import HeldJournal, InlinePool, InlineReactor, SteppingPool

ADMIN = PeerCredentials(pid=777, uid=4242, gid=4242)


class Harness:
    """
    A whole protocol core and a control factory in memory; connections are
    iosim pairs (or a bare StringTransport for raw bytes).
    """

    def __init__(
        self, journal: MemoryJournal | None = None, pool: Any = None, **factory: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.journal = journal if journal is not None else MemoryJournal()
        self.server = make_server(make_config(), clock=self.clock, journal=self.journal, hash_pool=pool,
                                  signing_keys=False)
        self.peer: PeerCredentials | None = ADMIN
        factory.setdefault("allowed_uids", [ADMIN.uid])
        self.factory = ControlFactory(
            self.clock, self.server.store, self.server.ctx,
            peer_credentials=lambda transport: self.peer, **factory,
        )

    def connect(self) -> Link:
        client, server, pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), amp.AMP,
        )
        return Link(client, server, pump)

    def raw(self) -> tuple[ControlProtocol, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    @property
    def records(self) -> int:
        return self.journal.record_count


class Link:
    def __init__(self, client: amp.AMP, server: ControlProtocol, pump: iosim.IOPump) -> None:
        self.client = client
        self.server = server
        self.pump = pump

    def ask(self, command: type[amp.Command], **arguments: Any) -> list[Any]:
        """
        Send a command; the returned list gets its result when it arrives.
        """
        results: list[Any] = []
        self.client.callRemote(command, **arguments).addBoth(results.append)
        self.pump.flush()
        return results

    def call(self, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
        (result,) = self.ask(command, **arguments)
        if isinstance(result, Failure):
            result.raiseException()
        assert isinstance(result, dict)
        return result

    def fails(self, command: type[amp.Command], **arguments: Any) -> BaseException:
        (result,) = self.ask(command, **arguments)
        assert isinstance(result, Failure), result
        return result.value

    def rows(self, command: type[amp.Command], **arguments: Any) -> list[dict[str, Any]]:
        """
        Every row of a listing, following the cursor.
        """
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.call(command, cursor=cursor, **arguments)
            rows += json.loads(page["rows"])
            cursor = page["cursor"] or None
            if cursor is None:
                return rows


@pytest.fixture
def events() -> Iterator[EventLoggingObserver]:
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)


def failures(events: EventLoggingObserver) -> list[dict[str, Any]]:
    """
    Events that carry a traceback or are errors: none may appear for any
    input a client can send.
    """
    return [
        e for e in events
        if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)
    ]


def audits(events: EventLoggingObserver, event: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in events
        if e.get("log_namespace") == "oauthd.audit" and event in (None, e.get("audit_event"))
    ]


def box(**values: bytes) -> bytes:
    return amp.AmpBox({k.encode(): v for k, v in values.items()}).serialize()


def command_box(command: bytes, ask: bytes = b"1", **arguments: bytes) -> bytes:
    return box(_command=command, _ask=ask, **arguments)


# ---------------------------------------------------------------------------
# Who may connect


@pytest.mark.parametrize(
    "creds, allowed",
    [
        (PeerCredentials(1, 0, 0), True),
        (PeerCredentials(1, os.getuid(), 999), True),
        (PeerCredentials(1, 1000, 1000), True),
        (PeerCredentials(1, 1001, 1001), False),
        (PeerCredentials(1, 1002, 50), True),
        (PeerCredentials(1, 1003, 1003, (20, 50)), True),
        (PeerCredentials(1, 1004, 1004, (20, 51)), False),
    ],
)
def test_who_is_allowed(creds: PeerCredentials, allowed: bool) -> None:
    """
    Root, the daemon's own uid, configured uids and members (primary or
    supplementary) of the admin group are admitted; nobody else.
    """
    harness = Harness(allowed_uids=[1000], admin_gid=50)
    assert harness.factory.allows(creds) is allowed
    assert Harness(allowed_uids=[]).factory.allows(PeerCredentials(1, 1002, 50)) is False


def test_refused_peer_is_closed_logged_and_changes_nothing(events: EventLoggingObserver) -> None:
    """
    A disallowed uid is disconnected at once, the refusal is logged with the
    uid as a structured field, and what it sent is never read.
    """
    harness = Harness()
    harness.peer = PeerCredentials(pid=5, uid=1234, gid=1234)
    protocol, transport = harness.raw()
    assert transport.disconnecting
    protocol.dataReceived(command_box(b"AddClient", name=b"sneaky"))
    assert transport.value() == b""
    assert list(harness.server.state.clients) == [] and harness.records == 0
    refusals = [e for e in events if e.get("log_format", "").startswith("control: refused")]
    assert [e["peer_uid"] for e in refusals] == [1234]
    assert refusals[0]["log_level"] == LogLevel.warn
    assert [e["peer_uid"] for e in audits(events, "control.connect")] == "1234".split()

    link = harness.connect()
    assert isinstance(link.fails(wire.Status), Exception)


def test_unknown_peer_is_refused(events: EventLoggingObserver) -> None:
    """
    A transport whose peer cannot be determined is refused too.
    """
    harness = Harness()
    harness.peer = None
    _, transport = harness.raw()
    assert transport.disconnecting


def test_socket_peer_credentials() -> None:
    """
    Over a real UNIX socket the kernel reports this process; a transport
    without a socket yields None.
    """
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        class Transport:
            def getHandle(self) -> socket.socket:
                return a

        creds = peer.socket_peer_credentials(Transport())  # type: ignore[arg-type]
    assert creds is not None
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert set(creds.groups) <= set(os.getgroups()) | {os.getgid()}
    assert peer.socket_peer_credentials(StringTransport()) is None


def test_resolve_group() -> None:
    assert peer.resolve_group("") is None
    assert peer.resolve_group("0") == 0
    assert peer.resolve_group("root") == 0
    with pytest.raises(KeyError):
        peer.resolve_group("no-such-group-here")


# ---------------------------------------------------------------------------
# Round trips


def test_client_lifecycle(events: EventLoggingObserver) -> None:
    """
    A client is added (its secret returned once and stored only as a
    digest), shown, listed, changed (a regenerated secret replaces the old
    one) and removed, which revokes its tokens.
    """
    harness = Harness()
    server = harness.server
    link = harness.connect()
    added = link.call(
        wire.AddClient, name="backup", scope="photos albums", grant_types=["client_credentials"],
        access_ttl=600, max_tokens=5, redirect_uris=["https://app.example/cb"], user=None,
    )
    client_id, secret = added["id"], added["secret"]
    assert tokens.is_client_id(client_id) and len(secret) == 32
    assert added["scope"] == "albums photos" and added["max_tokens"] == 5
    assert server.authenticate_client(client_id, secret) is not None
    assert not any(secret.encode() in p for p in harness.journal.payloads)

    assert link.call(wire.ShowClient, id=client_id)["name"] == "backup"
    assert [r["id"] for r in link.rows(wire.ListClients)] == [client_id]
    assert [r["id"] for r in link.rows(wire.ListClients, search="BACK")] == [client_id]
    assert link.rows(wire.ListClients, search="zzz") == []

    changed = link.call(wire.ModifyClient, id=client_id, regenerate_secret=True, scope="photos")
    assert changed["scope"] == "photos" and len(changed["secret"]) == 32
    assert server.authenticate_client(client_id, secret) is None
    assert server.authenticate_client(client_id, changed["secret"]) is not None

    token = link.call(wire.AddToken, label="job", scope="photos", lifetime=60, client_id=client_id)
    assert server.authenticate_token(token["secret"]) is not None
    removed = link.call(wire.RemoveClient, id=client_id)
    assert removed["revoked"] == 1
    assert server.authenticate_token(token["secret"]) is None
    assert isinstance(link.fails(wire.ShowClient, id=client_id), NotFound)
    assert [e["audit_event"] for e in audits(events)] == [
        "client.add", "client.update", "token.issue", "client.remove",
    ]
    assert failures(events) == []


def test_a_public_client_gets_no_secret_even_when_asked() -> None:
    """
    Regenerating the secret of a public client answers no secret (it would
    never authenticate: a public client has none), nor audits one.
    """
    harness = Harness()
    link = harness.connect()
    client_id = link.call(wire.AddClient, name="app", public=True, grant_types=["password"])["id"]
    changed = link.call(wire.ModifyClient, id=client_id, regenerate_secret=True)
    assert (changed["type"], changed["secret"]) == ("public", "")
    assert harness.server.state.clients[client_id].secret_digest == ""
    made_confidential = link.call(wire.ModifyClient, id=client_id, public=False)
    assert len(made_confidential["secret"]) == 32
    assert harness.server.authenticate_client(client_id, made_confidential["secret"]) is not None


def test_disabling_a_client_revokes_its_tokens() -> None:
    harness = Harness()
    link = harness.connect()
    client_id = link.call(wire.AddClient, name="c")["id"]
    secret = link.call(wire.AddToken, label="t", scope="*", lifetime=60, client_id=client_id)["secret"]
    changed = link.call(wire.ModifyClient, id=client_id, enabled=False)
    assert not changed["enabled"] and changed["revoked"] == 1
    assert harness.server.authenticate_token(secret) is None
    error = link.fails(wire.AddToken, label="t", scope="*", lifetime=60, client_id=client_id)
    assert isinstance(error, InvalidValue) and "disabled" in str(error)


def test_public_client_has_no_secret() -> None:
    link = Harness().connect()
    added = link.call(wire.AddClient, name="spa", public=True, grant_types=["authorization_code"])
    assert added["type"] == "public" and added["secret"] == ""
    made_confidential = link.call(wire.ModifyClient, id=added["id"], public=False,
                                  grant_types=["client_credentials"])
    assert made_confidential["type"] == "confidential" and len(made_confidential["secret"]) == 32


def test_user_lifecycle(events: EventLoggingObserver) -> None:
    """
    Users are created with a bcrypt-hashed password, can be found, changed,
    disabled (revoking their app passwords) and removed.
    """
    harness = Harness()
    server = harness.server
    link = harness.connect()
    row = link.call(wire.AddUser, name="Alice", password="correct horse", role="admin",
                    email="alice@example.com", full_name="Alice Liddell")
    assert row["name"] == "alice" and row["has_password"] and row["role"] == "admin"
    assert "correct horse" not in json.dumps([p.decode() for p in harness.journal.payloads])
    assert harness.server.state.users["alice"].password_hash.startswith("$2")
    assert isinstance(link.fails(wire.AddUser, name="alice", password="another one"), Conflict)
    assert isinstance(link.fails(wire.AddUser, name="bob", password="short"), InvalidValue)
    assert [r["name"] for r in link.rows(wire.ListUsers, search="alice@")] == ["alice"]

    link.call(wire.SetPassword, name="alice", password="battery staple")
    from twisted.internet.defer import ensureDeferred

    checked: list[Any] = []
    ensureDeferred(server.check_password("alice", "battery staple")).addBoth(checked.append)
    assert checked[0] is not None

    app = link.call(wire.AddToken, label="phone", scope="*", lifetime=0, user="alice")
    assert tokens.is_app_password(app["secret"]) and app["kind"] == APP_PASSWORD
    assert link.call(wire.ShowUser, name="alice")["tokens"] == 1
    disabled = link.call(wire.ModifyUser, name="alice", disabled=True)
    assert disabled["disabled"] and disabled["revoked"] == 1
    assert server.authenticate_token(app["secret"]) is None
    assert link.call(wire.RemoveUser, name="alice")["name"] == "alice"
    assert isinstance(link.fails(wire.ShowUser, name="alice"), NotFound)
    assert all(e["peer_uid"] == str(ADMIN.uid) for e in audits(events))
    assert failures(events) == []


def test_token_lifecycle() -> None:
    """
    auth add issues a token the protocol layer accepts as a bearer token
    (the same check the HTTP edge makes); auth show finds it by handle,
    secret or session id; auth rm revokes it before the reply arrives.
    """
    harness = Harness()
    server = harness.server
    link = harness.connect()
    issued = link.call(wire.AddToken, label="metrics", scope="metrics", lifetime=3600)
    secret = issued["secret"]
    assert tokens.is_access_token(secret) and issued["kind"] == ACCESS
    assert issued["expires_at"] == START + 3600
    token = server.authenticate_token(secret)
    assert token is not None and token.scope == "metrics" and token.label == "metrics"
    for reference in (secret, issued["handle"], tokens.session_id(secret)):
        assert link.call(wire.ShowToken, reference=reference)["handle"] == issued["handle"]
    assert [r["handle"] for r in link.rows(wire.ListTokens, search=secret)] == [issued["handle"]]

    removed = link.call(wire.RemoveToken, reference=issued["handle"])
    assert removed["revoked"] == 1
    assert server.authenticate_token(secret) is None
    error = link.fails(wire.RemoveToken, reference=secret)
    assert isinstance(error, NotFound) and secret not in str(error)


def test_token_errors() -> None:
    harness = Harness()
    link = harness.connect()
    client_id = link.call(wire.AddClient, name="c", scope="photos")["id"]
    cases = [
        ({"scope": "albums", "client_id": client_id}, InvalidValue, "exceeds the client's scope"),
        ({"scope": "nonsense"}, InvalidValue, "unknown scope"),
        ({"scope": ""}, InvalidValue, "must not be empty"),
        ({"scope": "*", "user": "ghost"}, NotFound, "no such user: ghost"),
        ({"scope": "*", "client_id": "cnope"}, NotFound, "no such client"),
        ({"scope": "*", "user": "x", "client_id": client_id}, InvalidValue, "not both"),
        ({"scope": "*", "lifetime": -5}, InvalidValue, "lifetime"),
        ({"scope": "*", "label": " "}, InvalidValue, "token name"),
    ]
    for arguments, kind, message in cases:
        arguments = {"label": "t", "lifetime": 60, **arguments}
        if arguments.get("user") == "x":
            link.call(wire.AddUser, name="x", password="long enough")
        error = link.fails(wire.AddToken, **arguments)
        assert isinstance(error, kind) and message in str(error), (arguments, error)
    assert harness.server.state.token_count() == 0


def test_expired_tokens_are_listed_only_on_request() -> None:
    harness = Harness()
    link = harness.connect()
    link.call(wire.AddToken, label="short", scope="*", lifetime=10)
    harness.clock.advance(11)
    assert link.rows(wire.ListTokens) == []
    (row,) = link.rows(wire.ListTokens, expired=True)
    assert row["expired"] is True


def test_status_and_compact(events: EventLoggingObserver) -> None:
    harness = Harness()
    link = harness.connect()
    for i in range(3):
        link.call(wire.AddToken, label=f"t{i}", scope="*", lifetime=60)
    link.call(wire.RemoveToken, reference=link.rows(wire.ListTokens)[0]["handle"])
    harness.clock.advance(30)
    status = link.call(wire.Status)
    assert status["uptime"] == 30
    assert (status["clients"], status["users"], status["tokens"]) == (0, 0, 2)
    assert (status["journal_records"], status["live_records"]) == (4, 2)
    assert status["version"] == __version__
    compacted = link.call(wire.Compact)
    assert (compacted["records_before"], compacted["records_after"]) == (4, 2)
    assert compacted["bytes_after"] < compacted["bytes_before"]
    assert link.call(wire.Status)["journal_records"] == 2
    assert [e["peer_uid"] for e in audits(events, "journal.compact")] == [str(ADMIN.uid)]


def test_compact_while_compacting_is_busy() -> None:
    journal = HeldJournal()
    harness = Harness(journal=journal)
    link = harness.connect()
    journal.holding = True
    first = link.ask(wire.Compact)
    assert first == []
    assert isinstance(link.fails(wire.Compact), Busy)
    journal.release()
    link.pump.flush()
    assert first[0]["records_after"] == 0


def test_reply_only_once_durable() -> None:
    """
    A change is answered only once the journal has it on disk.
    """
    journal = HeldJournal()
    harness = Harness(journal=journal)
    link = harness.connect()
    journal.holding = True
    answer = link.ask(wire.AddClient, name="slow")
    assert answer == [] and len(list(harness.server.state.clients)) == 1
    journal.release()
    link.pump.flush()
    assert answer[0]["name"] == "slow"


def test_journal_failure_is_a_storage_error(events: EventLoggingObserver) -> None:
    harness = Harness()
    harness.journal.fail(OSError(28, "No space left on device"))
    link = harness.connect()
    error = link.fails(wire.AddClient, name="doomed")
    assert isinstance(error, StorageError)
    assert "No space left" in str(error) and "\n" not in str(error)
    assert [e["outcome"] for e in audits(events, "client.add")] == ["failed"]
    assert failures(events) == []


def test_long_redirect_uri_lists_are_refused() -> None:
    link = Harness().connect()
    uris = [f"https://app.example/cb{i}" for i in range(rules.MAX_REDIRECT_URIS + 1)]
    error = link.fails(wire.AddClient, name="c", redirect_uris=uris)
    assert isinstance(error, InvalidValue) and "at most" in str(error)


# ---------------------------------------------------------------------------
# Errors and hostile input


def test_unknown_command_leaves_connection_usable(events: EventLoggingObserver) -> None:
    harness = Harness()
    link = harness.connect()

    class Bogus(amp.Command):
        pass

    assert isinstance(link.fails(Bogus), amp.UnhandledCommand)
    assert link.call(wire.Status)["version"]
    assert failures(events) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"label": b"t", "scope": b"*", "lifetime": b"soon"}, "argument lifetime must be a 32-bit integer"),
        ({"label": b"t", "scope": b"*", "lifetime": str(2**40).encode()}, "argument lifetime must be a 32-bit integer"),
        ({"label": b"t", "scope": b"*", "lifetime": b"9" * 5000}, "argument lifetime must be a 32-bit integer"),
        ({"scope": b"*", "lifetime": b"60"}, "missing argument label"),
        ({"label": b"\xff\xfe", "scope": b"*", "lifetime": b"60"}, "argument label must be text"),
        ({"label": b"t", "scope": b"*", "lifetime": b"60", "user": b"\xc3"}, "argument user must be text"),
    ],
)
def test_wrong_argument_types(
    events: EventLoggingObserver, arguments: dict[str, bytes], message: str,
) -> None:
    """
    A missing or mistyped argument is answered with BAD_ARGUMENT naming it
    (never echoing the value); nothing changes, nothing is logged as an
    error, and the connection stays open.
    """
    harness = Harness()
    protocol, transport = harness.raw()
    protocol.dataReceived(command_box(b"AddToken", **arguments))
    (answer,) = amp.parseString(transport.value())
    assert answer[b"_error_code"] == b"BAD_ARGUMENT"
    assert answer[b"_error_description"].decode() == message
    assert not transport.disconnecting
    assert harness.records == 0
    assert failures(events) == []
    transport.clear()
    protocol.dataReceived(command_box(b"Status", ask=b"2"))
    (answer,) = amp.parseString(transport.value())
    assert answer[b"_answer"] == b"2"


def test_bad_boolean_and_list(events: EventLoggingObserver) -> None:
    harness = Harness()
    protocol, transport = harness.raw()
    protocol.dataReceived(command_box(b"ModifyClient", id=b"c", enabled=b"maybe"))
    protocol.dataReceived(command_box(b"ListTokens", ask=b"2", limit=b"0"))
    first, second = amp.parseString(transport.value())
    assert first[b"_error_description"] == b"argument enabled must be True or False"
    assert second[b"_error_code"] == b"INVALID_VALUE"
    assert failures(events) == []


def test_truncated_frame_then_disconnect(events: EventLoggingObserver) -> None:
    """
    Half a command followed by a hang-up does nothing at all.
    """
    harness = Harness()
    protocol, transport = harness.raw()
    frame = command_box(b"AddClient", name=b"half")
    protocol.dataReceived(frame[: len(frame) // 2])
    protocol.connectionLost(Failure(Exception("gone")))
    assert transport.value() == b"" and harness.records == 0
    assert failures(events) == []


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!H", 256) + b"k" * 256,  # a key over AMP's 255 bytes
        box(**{f"k{i}": b"v" for i in range(control.MAX_BOX_KEYS + 1)}),
        box(**{f"k{i}": b"v" * 65535 for i in range(5)}),  # over MAX_BOX_BYTES
        box(_answer=b"1", value=b"x"),  # an answer to a question never asked
        box(_error=b"1", _error_code=b"X", _error_description=b"x"),
        box(something=b"else"),
        box(_command=b"ShowClient", id=b"cnope"),  # a failing command nobody awaits
    ],
    ids=["long-key", "many-keys", "huge-box", "answer", "error", "no-command", "no-ask"],
)
def test_protocol_violations_close_only_that_connection(
    events: EventLoggingObserver, data: bytes,
) -> None:
    """
    Oversized frames and boxes that are not commands close the connection
    with a warning naming the peer's uid (no traceback), change nothing,
    and leave other connections working.
    """
    harness = Harness()
    bystander = harness.connect()
    protocol, transport = harness.raw()
    protocol.dataReceived(data + command_box(b"AddClient", name=b"after"))
    assert transport.disconnecting
    assert transport.value() == b""
    assert harness.records == 0
    warnings = [e for e in events if e.get("log_format", "").startswith("control: closing")]
    assert [e["peer_uid"] for e in warnings] == [ADMIN.uid]
    assert failures(events) == []
    protocol.connectionLost(Failure(Exception("closed")))
    assert bystander.call(wire.AddClient, name="fine")["name"] == "fine"


def test_client_vanishing_while_password_hashes(events: EventLoggingObserver) -> None:
    """
    A client that hangs up while its user's password is being hashed
    creates nothing; the daemon and other connections carry on.
    """
    pool = SteppingPool()
    harness = Harness(pool=pool)
    protocol, transport = harness.raw()
    protocol.dataReceived(command_box(b"AddUser", name=b"carol", password=b"long enough"))
    assert len(pool.jobs) == 1
    other = harness.connect()
    assert other.call(wire.Status)["users"] == 0
    protocol.connectionLost(Failure(Exception("hung up")))
    pool.run_all()
    assert sorted(harness.server.state.users) == [] and harness.records == 0
    assert harness.server.ctx.hasher.pending == 0
    assert [e["outcome"] for e in audits(events, "user.add")] == ["abandoned"]
    assert failures(events) == []
    answer = other.ask(wire.AddUser, name="dave", password="long enough")
    pool.run_all()
    other.pump.flush()
    assert answer[0]["name"] == "dave"


def test_client_vanishing_after_the_change(events: EventLoggingObserver) -> None:
    """
    A client that hangs up while its change is being written still gets the
    change made and durable; the lost reply is dropped quietly.
    """
    journal = HeldJournal()
    harness = Harness(journal=journal)
    protocol, transport = harness.raw()
    journal.holding = True
    protocol.dataReceived(command_box(b"AddClient", name=b"made"))
    protocol.connectionLost(Failure(Exception("hung up")))
    journal.release()
    assert [c for c in list(harness.server.state.clients)]
    assert harness.records == 1
    assert [e["outcome"] for e in audits(events, "client.add")] == ["ok"]
    assert failures(events) == []


def test_commands_on_one_connection_run_concurrently() -> None:
    """
    A slow command (a password hash) does not hold up a quick one sent after
    it on the same connection.
    """
    pool = SteppingPool()
    harness = Harness(pool=pool)
    link = harness.connect()
    slow = link.ask(wire.AddUser, name="erin", password="long enough")
    quick = link.ask(wire.Status)
    assert slow == [] and quick[0]["users"] == 0
    pool.run_all()
    link.pump.flush()
    assert slow[0]["name"] == "erin"


# ---------------------------------------------------------------------------
# Paging


def issue_many(server: MemoryServer, count: int, **fields: Any) -> list[str]:
    """
    Issue C{count} tokens straight through the store; their handles.
    """
    records = []
    handles = []
    fields.setdefault("scope", "metrics")
    fields.setdefault("lifetime", 3600)
    for _ in range(count):
        minted = mint(server.ctx, ACCESS, **fields)
        records.append(minted.record)
        handles.append(minted.token.handle)
    server.store.commit(change(records))
    return handles


def test_pages_fit_amp_values_and_cover_everything() -> None:
    """
    Rows as long as a token's can be (a 200-character non-ASCII label, a
    long scope) still make pages that fit one AMP value, and the pages hold
    every token once, oldest first.
    """
    harness = Harness()
    label = "é☃" * 100
    handles = issue_many(harness.server, 1500, label=label, scope=" ".join(harness.server.ctx.config.scopes))
    link = harness.connect()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = link.call(wire.ListTokens, cursor=cursor)
        assert len(page["rows"].encode("utf-8")) <= wire.PAGE_BYTES
        rows = json.loads(page["rows"])
        assert rows and all(r["label"] == label for r in rows)
        seen += [r["handle"] for r in rows]
        pages += 1
        cursor = page["cursor"] or None
        if cursor is None:
            break
    assert seen == handles
    assert pages > 1500 // wire.PAGE_ROWS + 1


def test_listing_while_tokens_come_and_go() -> None:
    """
    Every token that lives through a whole listing appears exactly once;
    one revoked before its page is not shown; nothing appears twice.
    """
    harness = Harness()
    server = harness.server
    handles = issue_many(server, 2000)
    link = harness.connect()
    seen: list[str] = []
    revoked: set[str] = set()
    cursor = None
    while True:
        page = link.call(wire.ListTokens, cursor=cursor, limit=150)
        rows = json.loads(page["rows"])
        assert len(rows) <= 150
        seen += [r["handle"] for r in rows]
        cursor = page["cursor"] or None
        if cursor is None:
            break
        listed = set(seen)
        unseen = [h for h in handles if h not in listed and h not in revoked]
        for handle in unseen[-3:]:
            token = server.find_token(handle)
            assert token is not None
            server.revoke(token)
            revoked.add(handle)
        issue_many(server, 5)
    assert len(seen) == len(set(seen))
    assert set(seen) == set(handles) - revoked
    assert revoked


def test_scan_limit_bounds_each_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A filter that matches little still answers every page after examining
    at most SCAN_LIMIT tokens; pages may then be empty, the cursor moves on.
    """
    monkeypatch.setattr(paging, "SCAN_LIMIT", 100)
    harness = Harness()
    issue_many(harness.server, 450, label="other")
    issue_many(harness.server, 3, label="wanted")
    link = harness.connect()
    sizes = []
    cursor = None
    while True:
        page = link.call(wire.ListTokens, cursor=cursor, search="wanted")
        sizes.append(len(json.loads(page["rows"])))
        cursor = page["cursor"] or None
        if cursor is None:
            break
    assert sizes == [0, 0, 0, 0, 3]


def test_cursor_errors() -> None:
    harness = Harness()
    issue_many(harness.server, 30)
    link = harness.connect()
    first = link.call(wire.ListTokens, limit=10)
    for cursor in ("nonsense", "99.0", "1.99999", "1.-1"):
        error = link.fails(wire.ListTokens, cursor=cursor)
        assert isinstance(error, InvalidValue) and "cursor" in str(error)
    assert isinstance(link.fails(wire.ListUsers, cursor=first["cursor"]), InvalidValue)
    assert isinstance(harness.connect().fails(wire.ListTokens, cursor=first["cursor"]), InvalidValue)
    for limit in (0, wire.PAGE_ROWS + 1):
        assert isinstance(link.fails(wire.ListTokens, limit=limit), InvalidValue)
    # Repeating a page's cursor gives the same page again.
    again = [link.call(wire.ListTokens, cursor=first["cursor"], limit=10)["rows"] for _ in range(2)]
    assert again[0] == again[1]
    # A connection keeps at most MAX_LISTINGS open listings.
    for _ in range(wire.MAX_LISTINGS):
        link.call(wire.ListTokens, limit=10)
    assert isinstance(link.fails(wire.ListTokens, cursor=first["cursor"]), InvalidValue)


def test_search_tokens_by_prefix() -> None:
    harness = Harness()
    server = harness.server
    link = harness.connect()
    client_id = link.call(wire.AddClient, name="c")["id"]
    link.call(wire.AddUser, name="frank", password="long enough")
    link.call(wire.AddToken, label="for frank", scope="*", lifetime=60, user="frank")
    link.call(wire.AddToken, label="job", scope="*", lifetime=60, client_id=client_id)
    link.call(wire.AddToken, label="loose", scope="*", lifetime=60)
    assert [r["label"] for r in link.rows(wire.ListTokens, search="fra")] == ["for frank"]
    assert [r["label"] for r in link.rows(wire.ListTokens, search=client_id)] == ["job"]
    assert [r["label"] for r in link.rows(wire.ListTokens, search="lo")] == ["loose"]
    assert len(link.rows(wire.ListTokens)) == 3 == server.state.token_count()


def test_oversized_client_row_is_listed_without_redirect_uris() -> None:
    """
    A client with more redirect URIs than fit a page (possible only through
    another edge) is still listed, without them.
    """
    harness = Harness()
    uris = tuple(f"https://app.example/{'x' * 1900}/{i}" for i in range(40))
    client = Client(id="c000000000000001", name="huge", redirect_uris=uris, created_at=START)
    harness.server.store.commit(change([ClientPut(client)]))
    link = harness.connect()
    link.call(wire.AddClient, name="small")
    rows = link.rows(wire.ListClients)
    assert [(r["name"], len(r["redirect_uris"])) for r in rows] == [("huge", 0), ("small", 0)]


# ---------------------------------------------------------------------------
# The listener


class RecordingEndpoint:
    def __init__(self) -> None:
        self.umask_at_listen: int | None = None

    def listen(self, factory: object) -> Deferred[object]:
        self.umask_at_listen = os.umask(0o022)
        os.umask(self.umask_at_listen)
        return succeed(object())


def test_socket_is_bound_under_a_private_umask() -> None:
    """
    The control socket is created while the umask is 0177, so it never
    exists with looser permissions than 0600; the umask is restored after.
    """
    harness = Harness()
    endpoint = RecordingEndpoint()
    service = listen.ControlService(endpoint, harness.factory)  # type: ignore[arg-type]
    old = os.umask(0)
    try:
        service.privilegedStartService()
        assert os.umask(0) == 0
    finally:
        os.umask(old)
    assert endpoint.umask_at_listen == 0o177


@pytest_twisted.ensureDeferred
async def test_real_socket_modes_under_permissive_umask(tmp_path: Path) -> None:
    """
    Under umask 0 the socket comes out 0600 in a 0700 directory (made by the
    service when missing), and a real client gets answers over it.
    """
    from twisted.internet import reactor

    from oauthd.ctl.connection import connect

    harness = Harness()
    path = tmp_path / "run" / "control.sock"
    old = os.umask(0)
    try:
        service = listen.control_service(f"unix:{path}:mode=600", harness.factory, reactor)
        service.privilegedStartService()
        service.startService()
    finally:
        os.umask(old)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        from twisted.internet.threads import deferToThread

        def status() -> dict[str, Any]:
            connection = connect(str(path))
            try:
                return connection.call(wire.Status)
            finally:
                connection.close()

        assert (await deferToThread(status))["version"]
    finally:
        await service.stopService()
    assert not path.exists()


def test_open_socket_directory_warns(tmp_path: Path, events: EventLoggingObserver) -> None:
    from twisted.internet.testing import MemoryReactor

    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    listen.control_service(f"unix:{tmp_path}/open/c.sock", Harness().factory, MemoryReactor())
    assert [e["directory"] for e in events if "directory" in e] == [str(tmp_path / "open")]


def test_admin_settings_reach_the_factory(tmp_path: Path) -> None:
    """
    admin_uids and admin_group from the configuration are what the control
    factory admits; an unknown group stops the start with a config error.
    """
    from oauthd import tap
    from tests.helpers import InlineMemoryReactor

    gid = os.getgid()
    config = build_config({"data": str(tmp_path / "d"), "admin_uids": [1000, 1001], "admin_group": str(gid)}, {})
    reactor = InlineMemoryReactor()
    service = tap.build_service(config, reactor, journal_pool=InlinePool())
    # A memory reactor binds nothing: stand in for the socket the daemon
    # gives to the admin group.
    (tmp_path / "d" / "control.sock").touch()
    service.privilegedStartService()
    factory = reactor.unixServers[0][1]
    assert isinstance(factory, ControlFactory)
    assert {1000, 1001, 0, os.getuid()} == factory.allowed_uids
    assert factory.admin_gid == gid
    with pytest.raises(ConfigError, match="admin_group: no such group 'nogroup-xyz'"):
        tap.build_service(
            build_config({"data": str(tmp_path / "e"), "admin_group": "nogroup-xyz"}, {}),
            InlineMemoryReactor(), journal_pool=InlinePool(),
        )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"admin_uids": [-1]}, "admin_uids: -1 is not a uid"),
        ({"admin_uids": [True]}, "admin_uids: True is not a uid"),
        ({"admin_uids": "0"}, "admin_uids: expected list"),
        ({"admin_group": "wheel; rm"}, "admin_group: 'wheel; rm' is not a group"),
    ],
)
def test_admin_config_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config(values, {})


def test_wire_errors() -> None:
    """
    Library errors become one-line wire errors; bugs are left to AMP.
    """
    from twisted.internet.defer import CancelledError

    from oauthd.interfaces import HasherBusy, PasswordTooLong
    from oauthd.eventlog import CompactionInProgress, JournalFailed
    from oauthd.protocol.scopes import ScopeError

    assert isinstance(errors.wire_error(ScopeError("unknown scope 'x'")), InvalidValue)
    assert isinstance(errors.wire_error(PasswordTooLong("too long")), InvalidValue)
    assert isinstance(errors.wire_error(HasherBusy()), Busy)
    assert isinstance(errors.wire_error(CompactionInProgress()), Busy)
    assert isinstance(errors.wire_error(JournalFailed("disk\nfull")), StorageError)
    assert "\n" not in str(errors.wire_error(JournalFailed("disk\nfull")))
    assert isinstance(errors.wire_error(CancelledError()), wire.Abandoned)
    assert errors.wire_error(KeyError("bug")) is None
    assert isinstance(errors.wire_error(BadArgument("x")), BadArgument)


def test_revoking_an_app_password_counts_what_it_takes_along() -> None:
    """
    auth rm of an app password also revokes the sessions obtained with it,
    and says how many tokens went.
    """
    from oauthd.protocol.issuing import derived_label
    from oauthd.state.entities import SESSION

    harness = Harness()
    server = harness.server
    link = harness.connect()
    link.call(wire.AddUser, name="gina", password="long enough")
    app = link.call(wire.AddToken, label="phone", scope="*", lifetime=0, user="gina")
    parent = server.authenticate_token(app["secret"])
    assert parent is not None
    minted = mint(server.ctx, SESSION, scope="*", lifetime=600, user="gina", label=derived_label(parent))
    server.store.commit(change([minted.record]))
    session = minted.secret
    assert link.call(wire.RemoveToken, reference=app["handle"])["revoked"] == 2
    assert server.authenticate_token(session) is None


BIG = "x" * 60_000


@pytest.mark.parametrize(
    "command, arguments",
    [
        (wire.AddClient, {"name": BIG}),
        (wire.AddClient, {"name": "c", "scope": BIG}),
        (wire.AddClient, {"name": "c", "redirect_uris": ["https://a.example/" + BIG[:50_000]]}),
        (wire.AddClient, {"name": "c", "grant_types": [BIG[:30_000], BIG[:30_000]]}),
        (wire.AddUser, {"name": BIG, "password": "long enough"}),
        (wire.AddUser, {"name": "hank", "password": BIG}),
        (wire.AddUser, {"name": "hank", "password": "long enough", "email": BIG}),
        (wire.AddToken, {"label": BIG, "scope": "*", "lifetime": 60}),
        (wire.AddToken, {"label": "t", "scope": BIG, "lifetime": 60}),
        (wire.ShowClient, {"id": BIG}),
        (wire.ShowToken, {"reference": BIG}),
        (wire.RemoveToken, {"reference": BIG}),
        (wire.ListTokens, {"search": BIG}),
    ],
)
def test_oversized_values(
    events: EventLoggingObserver, command: type[amp.Command], arguments: dict[str, Any],
) -> None:
    """
    Values as long as AMP carries get a short one-line answer (never the
    value echoed back), change nothing, and leave the connection usable.
    """
    harness = Harness()
    link = harness.connect()
    (result,) = link.ask(command, **arguments)
    if isinstance(result, Failure):
        message = str(result.value)
        assert len(message) < 300 and "\n" not in message
    else:
        assert json.loads(result["rows"]) == []
    assert harness.records == 0
    assert failures(events) == []
    assert link.call(wire.Status)["version"]


def test_a_stale_socket_from_a_crash_is_removed(tmp_path: Path) -> None:
    """
    A socket file left by a killed daemon (nobody listening) is removed at
    start, so the restart can bind; a live one is left alone.
    """
    import socket as socket_module

    from oauthd.control.listen import remove_stale_socket

    stale = str(tmp_path / "stale.sock")
    left = socket_module.socket(socket_module.AF_UNIX)
    left.bind(stale)
    left.close()
    live = str(tmp_path / "live.sock")
    listening = socket_module.socket(socket_module.AF_UNIX)
    listening.bind(live)
    listening.listen(1)
    try:
        remove_stale_socket(stale)
        remove_stale_socket(live)
        assert not os.path.exists(stale)
        assert os.path.exists(live)
    finally:
        listening.close()


def test_a_cursor_with_non_ascii_digits_is_invalid() -> None:
    from oauthd.protocol.errors import InvalidValue
    from oauthd.control.paging import parse_cursor as _parse_cursor

    for cursor in ("1.²", "².1", "1.1", "x.1"):
        if cursor == "1.1":
            assert _parse_cursor(cursor) == (1, 1)
            continue
        with pytest.raises(InvalidValue):
            _parse_cursor(cursor)
