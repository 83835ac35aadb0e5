"""
The control socket under a hostile or careless peer: malformed list values,
half a box left hanging, a peer that never reads its replies; and the
socket's group and mode with an admin group.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure

from oauthd.config import ConfigError, build_config
from oauthd.control import listen, server, wire
from oauthd.control.server import ControlProtocol
from oauthd.testing import SteppingPool
from tests.test_control import Harness, command_box, events, failures, issue_many

__all__ = ["events"]


def _strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(v)) + v for v in values)


def test_a_cut_short_list_is_refused_not_stored_as_empty(events: Any) -> None:
    """
    A list argument whose encoding is cut short (a length prefix promising
    more bytes than follow, or half a prefix) is refused with BAD_ARGUMENT
    naming it; the client keeps its grant types and the connection stays.
    """
    harness = Harness()
    link = harness.connect()
    client = link.call(wire.AddClient, name="app", grant_types=["client_credentials"])
    records = harness.records
    protocol, transport = harness.raw()
    whole = _strings(b"client_credentials", b"refresh_token")
    for ask, value in enumerate([whole[:5], whole[:-3], whole + b"\x00", _strings(b"x")[:1]]):
        transport.clear()
        protocol.dataReceived(command_box(
            b"ModifyClient", ask=str(ask).encode(), id=client["id"].encode(), grant_types=value,
        ))
        (answer,) = amp.parseString(transport.value())
        assert answer[b"_error_code"] == b"BAD_ARGUMENT", value
        assert answer[b"_error_description"] == b"argument grant_types must be a list"
    assert not transport.disconnecting
    assert harness.records == records
    assert link.call(wire.ShowClient, id=client["id"])["grant_types"] == ["client_credentials"]
    assert failures(events) == []


def test_a_whole_list_still_decodes() -> None:
    argument = wire.ListOf(amp.Unicode())
    assert argument.fromString(b"") == []
    assert argument.fromString(_strings(b"a", b"", b"bc")) == ["a", "", "bc"]
    assert argument.fromString(argument.toString(["x", "y"])) == ["x", "y"]


# ---------------------------------------------------------------------------
# Timeouts


def closing_reasons(events: Any) -> list[str]:
    return [e["what"] for e in events if e.get("log_format", "").startswith("control: closing")]


def test_half_a_box_is_dropped_after_its_timeout(events: Any) -> None:
    """
    A peer that sends half a box and stops is dropped (aborted, with a
    warning) PARTIAL_BOX_TIMEOUT seconds after the box's first byte; a
    trickle of further bytes does not put it off.
    """
    harness = Harness()
    protocol, transport = harness.raw()
    frame = command_box(b"AddClient", name=b"slow")
    protocol.dataReceived(frame[:7])
    harness.clock.advance(server.PARTIAL_BOX_TIMEOUT - 10)
    protocol.dataReceived(frame[7:9])
    harness.clock.advance(9)
    assert not transport.disconnecting
    harness.clock.advance(1)
    assert transport.disconnected  # aborted, not waiting to flush
    assert closing_reasons(events) == ["it left a box unfinished"]
    protocol.dataReceived(frame[9:])
    assert harness.records == 0 and transport.value() == b""
    protocol.connectionLost(Failure(Exception("aborted")))
    assert harness.clock.getDelayedCalls() == []
    assert failures(events) == []


def test_boxes_that_keep_arriving_split_across_reads_are_not_dropped(events: Any) -> None:
    """
    A peer pipelining commands, each read ending mid-box, makes progress:
    each box has its own time to arrive, so it is never dropped.
    """
    harness = Harness()
    protocol, transport = harness.raw()
    stream = b"".join(command_box(b"Status", ask=str(n).encode()) for n in range(10))
    step = len(stream) // 10 + 7
    for start in range(0, len(stream), step):
        protocol.dataReceived(stream[start:start + step])
        harness.clock.advance(server.PARTIAL_BOX_TIMEOUT - 1)
    assert not transport.disconnecting
    assert len(amp.parseString(transport.value())) == 10
    assert closing_reasons(events) == []


def test_an_idle_connection_lasts_until_the_idle_timeout(events: Any) -> None:
    """
    A connection with nothing half sent is not dropped by the short timeout;
    each command starts its idle time again; after IDLE_TIMEOUT with nothing
    it is closed.
    """
    harness = Harness()
    link = harness.connect()
    harness.clock.advance(server.PARTIAL_BOX_TIMEOUT + 1)
    link.call(wire.Status)
    harness.clock.advance(server.IDLE_TIMEOUT - 1)
    assert link.call(wire.Status)["version"]
    harness.clock.advance(server.IDLE_TIMEOUT - 1)
    assert not link.server.transport.disconnecting  # type: ignore[union-attr]
    harness.clock.advance(1)
    assert link.server.transport.disconnecting  # type: ignore[union-attr]
    assert closing_reasons(events) == ["it was idle"]


def test_a_running_command_is_never_timed_out(events: Any) -> None:
    """
    While a command runs (a password being hashed), its peer waits on the
    daemon and is not dropped however long it takes.
    """
    pool = SteppingPool()
    harness = Harness(pool=pool)
    link = harness.connect()
    answer = link.ask(wire.AddUser, name="erin", password="long enough")
    harness.clock.advance(server.IDLE_TIMEOUT * 2)
    assert not link.server.transport.disconnecting  # type: ignore[union-attr]
    pool.run_all()
    link.pump.flush()
    assert answer[0]["name"] == "erin"
    assert closing_reasons(events) == []


# ---------------------------------------------------------------------------
# Flow control


class SocketLikeTransport(StringTransport):
    """
    A transport whose buffer is "full" past C{limit} bytes, as a socket's
    is: writing past it pauses the registered producer, and the peer reading
    everything resumes it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.reading = True
        self.most = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self.most = max(self.most, len(self.value()))
        if len(self.value()) > self.limit and self.producer is not None and self.reading:
            self.reading = False
            self.producer.pauseProducing()

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def peer_reads(self) -> list[amp.AmpBox]:
        boxes = amp.parseString(self.value())
        self.clear()
        if not self.reading and self.producer is not None:
            self.producer.resumeProducing()
        return boxes


def test_replies_to_a_peer_that_does_not_read_stay_bounded(events: Any) -> None:
    """
    A peer that asks for many listing pages at once and does not read the
    answers gets no more than about one page beyond a full buffer; each time
    it reads, the daemon answers more, until every command is answered.
    """
    harness = Harness()
    issue_many(harness.server, 3000, label="x" * 100)
    protocol = harness.factory.buildProtocol(None)
    transport = SocketLikeTransport(limit=65536)
    protocol.makeConnection(transport)
    asked = 40
    protocol.dataReceived(b"".join(
        command_box(b"ListTokens", ask=str(n).encode()) for n in range(asked)
    ))
    assert transport.most < 65536 + wire.PAGE_BYTES + 1024
    answered = []
    while len(answered) < asked:
        boxes = transport.peer_reads()
        assert boxes, "the daemon stopped answering"
        answered += [b[b"_answer"] for b in boxes]
    assert sorted(answered, key=int) == [str(n).encode() for n in range(asked)]
    assert transport.most < 65536 + wire.PAGE_BYTES + 1024
    assert failures(events) == []


def test_a_peer_that_reads_slowly_is_not_dropped(events: Any) -> None:
    """
    A peer that reads a little within each UNREAD_TIMEOUT keeps its
    connection, however long the whole takes.
    """
    harness = Harness()
    issue_many(harness.server, 3000, label="x" * 100)
    protocol = harness.factory.buildProtocol(None)
    transport = SocketLikeTransport(limit=65536)
    protocol.makeConnection(transport)
    asked = 20
    protocol.dataReceived(b"".join(command_box(b"ListTokens", ask=str(n).encode()) for n in range(asked)))
    answered = 0
    while answered < asked:
        harness.clock.advance(server.UNREAD_TIMEOUT - 1)
        answered += len(transport.peer_reads())
    assert not transport.disconnecting
    assert closing_reasons(events) == []


def test_a_peer_that_never_reads_is_dropped(events: Any) -> None:
    harness = Harness()
    issue_many(harness.server, 3000, label="x" * 100)
    protocol = harness.factory.buildProtocol(None)
    transport = SocketLikeTransport(limit=65536)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"".join(command_box(b"ListTokens", ask=str(n).encode()) for n in range(5)))
    harness.clock.advance(server.UNREAD_TIMEOUT)
    assert transport.disconnected
    assert closing_reasons(events) == ["it did not read its replies"]


# ---------------------------------------------------------------------------
# The socket's group and mode


@pytest_twisted.ensureDeferred
async def test_admin_group_gets_the_socket_0660(tmp_path: Path) -> None:
    """
    With an admin group, the daemon gives the socket to that group, mode
    0660, whatever the endpoint's mode and the umask (here the caller's own
    primary group, so this runs unprivileged).
    """
    from twisted.internet import reactor

    harness = Harness()
    path = tmp_path / "run" / "control.sock"
    gid = os.getgid()
    old = os.umask(0)
    try:
        service = listen.control_service(f"unix:{path}:mode=600", harness.factory, reactor, gid)
        service.privilegedStartService()
        service.startService()
    finally:
        os.umask(old)
    try:
        assert path.stat().st_mode & 0o777 == 0o660
        assert path.stat().st_gid == gid
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_without_admin_group_the_socket_stays_0600(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "control.sock"
    service = listen.control_service(f"unix:{path}:mode=600", Harness().factory, reactor)
    service.privilegedStartService()
    try:
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_group_the_socket_cannot_be_given_to_stops_the_start(tmp_path: Path) -> None:
    """
    If the socket cannot be given to the group (the daemon's user is not in
    it), the start fails with a configuration error naming the socket, and
    the socket keeps its private mode.
    """
    from twisted.internet import reactor

    def refuse(path: str, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    path = tmp_path / "control.sock"
    endpoint = listen.serverFromString(reactor, f"unix:{path}:mode=600")
    service = listen.ControlService(endpoint, Harness().factory, str(path), 4321, chown=refuse)
    with pytest.raises(ConfigError) as raised:
        service.privilegedStartService()
    assert str(raised.value) == (
        f"admin_group: cannot give the control socket {path} to group 4321: Operation not permitted"
    )
    assert path.stat().st_mode & 0o777 == 0o600
    await service.stopService()


def test_the_daemon_exits_with_one_line_when_the_group_cannot_have_the_socket(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    from oauthd import tap
    from oauthd.testing import InlinePool
    from tests.helpers import InlineMemoryReactor

    config = build_config({"data": str(tmp_path / "d"), "admin_group": str(os.getgid())}, {})
    # A memory reactor binds nothing, so there is no socket to give.
    service = tap.build_service(config, InlineMemoryReactor(), journal_pool=InlinePool())
    with pytest.raises(SystemExit):
        service.privilegedStartService()
    err = capfd.readouterr().err
    assert err.startswith("oauthd: admin_group: cannot give the control socket ")
    assert err.endswith(": No such file or directory\n") and err.count("\n") == 1


# ---------------------------------------------------------------------------
# Listings


def test_a_token_listing_copies_no_keys() -> None:
    """
    Starting a listing of many tokens allocates about one page's worth, not
    a copy of every key (which was 8 bytes a token and more).
    """
    import tracemalloc

    harness = Harness()
    issue_many(harness.server, 100_000)
    protocol, transport = harness.raw()
    protocol.dataReceived(command_box(b"Status", ask=b"0"))
    tracemalloc.start()
    try:
        protocol.dataReceived(command_box(b"ListTokens", ask=b"1", limit=b"10"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (_, answer) = amp.parseString(transport.value())
    assert len(json.loads(answer[b"rows"])) == 10 and answer[b"cursor"]
    assert peak < 200_000


def test_a_listing_survives_the_order_being_pruned() -> None:
    """
    Revoking most tokens mid-listing (which prunes the issue order) neither
    skips nor repeats a token that lives through the listing; tokens issued
    after it started are not in it.
    """
    harness = Harness()
    server = harness.server
    handles = issue_many(server, 3000)
    link = harness.connect()
    page = link.call(wire.ListTokens, limit=100)
    seen = [r["handle"] for r in json.loads(page["rows"])]
    kept = set(handles[::3]) | set(seen)
    for handle in handles:
        if handle not in kept:
            token = server.find_token(handle)
            assert token is not None
            server.revoke(token)
    assert len(server.state.token_order) < 3000  # pruned
    later = set(issue_many(server, 50))
    cursor = page["cursor"]
    while cursor:
        page = link.call(wire.ListTokens, cursor=cursor, limit=100)
        seen += [r["handle"] for r in json.loads(page["rows"])]
        cursor = page["cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) == kept and not later & set(seen)
    assert seen == [h for h in handles if h in kept]


def test_the_taken_order_keeps_numbers_across_pruning() -> None:
    from oauthd.state.order import TakenOrder

    rows = set(range(10))
    order = TakenOrder(rows)
    for key in range(10):
        order.add(key)
    assert order.run(3, 6, 10) == ([3, 4, 5], [3, 4, 5])
    for key in (0, 1, 2, 3, 5):
        rows.discard(key)
        order.removed()
    assert len(order) == 5  # pruned at half
    assert order.run(0, 10, 3) == ([4, 6, 7], [4, 6, 7])
    assert order.run(5, order.end, 10) == ([6, 7, 8, 9], [6, 7, 8, 9])
    order.add(10)
    assert order.end == 11 and order.run(9, 11, 5) == ([9, 10], [9, 10])


@pytest_twisted.ensureDeferred
async def test_a_slow_reader_over_a_real_socket_gets_every_reply(tmp_path: Path) -> None:
    """
    Over a real UNIX socket, a peer that asks for many pages before reading
    any gets them all, in the end, once it reads.
    """
    import socket as sockets

    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    harness = Harness()
    issue_many(harness.server, 3000, label="x" * 100)
    path = tmp_path / "control.sock"
    service = listen.control_service(f"unix:{path}", harness.factory, reactor)
    service.privilegedStartService()
    built: list[ControlProtocol] = []
    build = harness.factory.buildProtocol
    harness.factory.buildProtocol = lambda addr: built.append(build(addr)) or built[-1]  # type: ignore[method-assign]
    asked = 40
    peer = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        await deferToThread(peer.connect, str(path))
        await deferToThread(peer.sendall, b"".join(
            command_box(b"ListTokens", ask=str(n).encode()) for n in range(asked)))
        # The daemon answers until the socket's buffer is full, then waits.
        for _ in range(10_000):
            if built and built[0].paused:
                break
            await deferLater(reactor, 0, lambda: None)
        assert built[0].paused

        def read_all() -> list[amp.AmpBox]:
            data = b""
            while True:
                data += peer.recv(1 << 20)
                boxes = amp.parseString(data[:_complete(data)])
                if len(boxes) == asked:
                    return boxes

        boxes = await deferToThread(read_all)
        assert sorted(int(b[b"_answer"]) for b in boxes) == list(range(asked))
    finally:
        peer.close()
        await service.stopService()


def _complete(data: bytes) -> int:
    """
    The length of the whole boxes at the start of C{data}.
    """
    position = end = 0
    while position + 2 <= len(data):
        (length,) = struct.unpack_from("!H", data, position)
        if position + 2 + length > len(data):
            break
        position += 2 + length
        if length == 0:
            end = position
    return end


def test_the_taken_order_numbers_keys_added_after_a_pruning() -> None:
    from oauthd.state.order import TakenOrder

    rows = set(range(6))
    order = TakenOrder(rows)
    for key in range(6):
        order.add(key)
    for key in (1, 2, 4):
        rows.discard(key)
        order.removed()
    assert len(order) == 3 and order.end == 6
    for key in (6, 7):
        rows.add(key)
        order.add(key)
    assert order.run(0, order.end, 10) == ([0, 3, 5, 6, 7], [0, 3, 5, 6, 7])
    assert order.run(4, 7, 10) == ([5, 6], [5, 6])
    assert order.run(6, 8, 1) == ([6], [6])
    for key in (0, 3, 5):
        rows.discard(key)
        order.removed()
    assert order.run(0, order.end, 10) == ([6, 7], [6, 7])
    order.add(8)
    assert order.end == 9 and order.run(7, 9, 10) == ([7, 8], [7, 8])


def test_the_taken_order_prunes_only_past_its_floor() -> None:
    """
    With a floor, removed keys stay until that many are removed (and half),
    numbers unchanged either way.
    """
    from oauthd.state.order import TakenOrder

    rows = set(range(10))
    order = TakenOrder(rows, floor=8)
    for key in range(10):
        order.add(key)
    for key in range(7):
        rows.discard(key)
        order.removed()
    assert len(order) == 10  # past half, short of the floor: not pruned
    assert order.run(0, 10, 10) == ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], list(range(10)))
    rows.discard(7)
    order.removed()
    assert len(order) == 2
    assert order.run(0, order.end, 10) == ([8, 9], [8, 9])
