"""
The audit trail over a shared event log (L{MemorySharedLog}, delivered step
by step): each simulated node keeps its own chained trail, wired as the
daemon wires it (L{follow_shared}, L{anchor_trail}); a change's events
travel in the log, so every node's trail, and C{oauthctl audit} on any
node, shows every node's changes, each once, restarts included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from treq.testing import StubTreq

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oauthd.control import wire
from oauthd.control.server import ControlFactory
from oauthd.eventlog import MemorySharedLog
from oauthd.protocol.context import Context
from oauthd.services.audit import RETRY_SECONDS, TRAIL_NAME, AuditTrail, TrailLimits, verify_trail
from oauthd.services.cluster_audit import last_position
from oauthd.services.hashing import PasswordHasher
from oauthd.state.audit_records import AuditNoted, NotedEvent
from oauthd.state.audit_relay import AuditRelay
from oauthd.state.decision import audit
from oauthd.state.follower import replayed
from oauthd.state.records import decode, encode
from oauthd.state.store import Store
from oauthd.tap import anchor_trail, follow_shared
from oauthd.testing import InlinePool, InlineReactor, MemoryServer, SteppingPool
from oauthd.web.api import OAuthHTTP
from tests.helpers import START, make_config
from tests.test_audit_limits import Disk
from tests.test_control import ADMIN, Link

from twisted.test import iosim


def inline(work: Any) -> Any:
    return maybeDeferred(work)


class AuditedNode:
    """
    One daemon over the shared log: its store, its trail in C{directory},
    its control socket and its HTTP API.
    """

    def __init__(self, shared: MemorySharedLog, directory: Path, name: str, clock: Clock, **trail: Any) -> None:
        self.name, self.directory, self.clock = name, directory, clock
        self.log = shared.node()
        relay = AuditRelay(name)
        state = replayed(self.log, clock.seconds(), relay)
        self.trail = AuditTrail(str(directory), clock, InlineReactor(), **{"pool": InlinePool(), **trail})
        self.trail.startService()
        self.store = Store(state, self.log, clock, self.trail)
        hasher = PasswordHasher(InlineReactor(), InlinePool(), cost=4)  # type: ignore[arg-type]
        self.ctx = Context(state, make_config(), clock, hasher, random_bytes=os.urandom)
        self.server = MemoryServer(self.store, self.ctx)
        self.cluster = follow_shared(self.store, relay, self.trail)
        reader = anchor_trail(self.trail, self.store, clock, run=inline, node=name)
        self.factory = ControlFactory(clock, self.store, self.ctx, peer_credentials=lambda _: ADMIN,
                                      allowed_uids=[ADMIN.uid], audit_reader=reader)
        self.http = StubTreq(OAuthHTTP(self.ctx, self.store).resource())

    def connect(self) -> Link:
        client, server, pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), amp.AMP)
        return Link(client, server, pump)

    def lines(self) -> list[dict[str, Any]]:
        """
        The trail's lines, as written.
        """
        with open(self.directory / TRAIL_NAME, "rb") as f:
            return [json.loads(line) for line in f]

    def changes(self) -> list[dict[str, Any]]:
        """
        The lines of changes made through the log (those with a position).
        """
        return [line for line in self.lines() if "pos" in line]

    def stop(self) -> None:
        self.log.close()
        self.cluster.stopService()
        self.trail.stopService()


def shown(line: dict[str, Any]) -> dict[str, Any]:
    """
    A change's line as every node writes it: without its place in one
    node's trail.
    """
    return {k: v for k, v in line.items() if k not in ("seq", "time", "chain")}


class ClusterAuditCase(SynchronousTestCase):
    """
    Nodes A and B over one log, each with its trail in a directory of its own.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.shared = MemorySharedLog()
        self.base = Path(self.mktemp())
        self.a = self.start("A")
        self.b = self.start("B")
        self.settle()

    def start(self, name: str, **trail: Any) -> AuditedNode:
        directory = self.base / name
        directory.mkdir(parents=True, exist_ok=True)
        return AuditedNode(self.shared, directory, name, self.clock, **trail)

    def settle(self) -> None:
        for _ in range(5):
            self.clock.advance(0)
            self.shared.deliver()

    def admin(self, node: AuditedNode, command: type[amp.Command], **arguments: Any) -> Any:
        """
        A command on C{node}'s control socket, answered once the log has
        delivered everything everywhere.
        """
        link = node.connect()
        results = link.ask(command, **arguments)
        for _ in range(20):
            if results:
                break
            self.settle()
            link.pump.flush()
        (result,) = results
        return result

    def token(self, node: AuditedNode, client: tuple[str, str]) -> int:
        answers: list[Any] = []
        node.http.post("http://127.0.0.1:9478/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                       auth=client).addBoth(answers.append)
        node.http.flush()
        self.settle()
        node.http.flush()
        (answer,) = answers
        return int(answer.code)

    def client(self, node: AuditedNode) -> tuple[str, str]:
        added = self.admin(node, wire.AddClient, name="app", grant_types=["client_credentials"], scope="*")
        assert isinstance(added, dict), added
        return added["id"], added["secret"]


class SeenOnEveryNodeTests(ClusterAuditCase):

    def test_a_client_added_on_a_is_in_the_trail_of_b_with_a_s_id(self) -> None:
        """
        A client added over A's control socket is in B's trail, and read by
        C{oauthctl audit} on B, as A's change: the same line on both nodes
        but for its place in each trail.
        """
        client_id, _ = self.client(self.a)
        on_a = [line for line in self.a.changes() if line["event"] == "client.add"]
        on_b = [line for line in self.b.changes() if line["event"] == "client.add"]
        self.assertEqual(len(on_a), 1)
        self.assertEqual([shown(line) for line in on_b], [shown(line) for line in on_a])
        self.assertEqual((on_b[0]["node"], on_b[0]["client"], on_b[0]["outcome"]), ("A", client_id, "ok"))
        self.assertEqual(decode(self.shared.records[int(on_b[0]["pos"]) - 1][0]).node, "A")  # type: ignore[union-attr]
        read = self.b.connect().rows(wire.ReadAudit, event="client.add")
        self.assertEqual([(row["node"], row["client"]) for row in read], [("A", client_id)])

    def test_a_token_issued_over_http_on_b_is_in_the_trail_of_a(self) -> None:
        """
        A token B issues over HTTP is in A's trail as B's change.
        """
        client = self.client(self.a)
        self.assertEqual(self.token(self.b, client), 200)
        issued = [line for line in self.a.changes() if line["event"] == "token.issue"]
        self.assertEqual([(line["node"], line["outcome"], line["client"]) for line in issued],
                         [("B", "ok", client[0])])
        self.assertEqual([shown(line) for line in self.b.changes() if line["event"] == "token.issue"],
                         [shown(line) for line in issued])

    def test_node_filter(self) -> None:
        """
        C{--node} selects one node's changes; on a node, its own lines
        without a node (refusals, listings) count as its own.
        """
        client = self.client(self.a)
        self.assertEqual(self.token(self.b, client), 200)
        self.assertEqual(self.token(self.b, (client[0], "wrong")), 401)
        self.b.trail._flush()
        link = self.b.connect()
        from_a = link.rows(wire.ReadAudit, node="A")
        from_b = link.rows(wire.ReadAudit, node="B")
        self.assertIn("client.add", {row["event"] for row in from_a})
        self.assertTrue(all(row["node"] == "A" for row in from_a))
        self.assertIn("token.issue", {row["event"] for row in from_b})
        self.assertNotIn("client.add", {row["event"] for row in from_b})
        self.assertTrue(any("node" not in row for row in from_b), from_b)
        self.assertEqual(link.rows(wire.ReadAudit, node="C"), [])
        self.assertIn("node must be a node id", str(link.fails(wire.ReadAudit, node="a b")))

    def test_trails_verify_on_each_node(self) -> None:
        """
        Each node's trail is its own chain: C{oauthctl audit verify} holds
        on both, and each node's anchor is its own, so one node's
        retention moving its anchor does not break another's.
        """
        self.client(self.a)
        self.a.trail.retention.anchor(500, "ab" * 32)
        self.settle()
        self.assertEqual(self.a.store.state.audit_anchor.of("A"), (500, "ab" * 32))
        found = self.admin(self.b, wire.VerifyAudit)
        self.assertEqual((found["file"], found["anchor_seq"]), ("", 1))
        self.assertGreaterEqual(found["lines"], 1)


class MigratedTrailTests(SynchronousTestCase):

    def test_a_single_daemons_trail_moved_to_a_shared_log_keeps_its_anchor(self) -> None:
        """
        A single daemon whose retention removed its trail's first files,
        its journal copied into a shared log: the node anchors its trail
        where the journal said it begins, as its own, without the warning
        about files an older oauthd removed.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, globalLogPublisher

        from oauthd.services.audit_files import chain_of
        from oauthd.state.audit_anchor import AuditAnchored

        clock = Clock()
        clock.advance(START)
        previous = "cd" * 32
        first = json.dumps({"seq": 5, "time": START, "event": "audit.continue", "outcome": "ok",
                            "previous": previous}, separators=(",", ":"))
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / TRAIL_NAME).write_text(
            first[:-1] + ',"chain":"' + chain_of(previous, first.encode()) + '"}\n')
        (directory / TRAIL_NAME).chmod(0o600)
        shared = MemorySharedLog()
        shared._append([encode(AuditAnchored(5, previous))])
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        node = AuditedNode(shared, directory, "A", clock)
        for _ in range(3):
            clock.advance(0)
            shared.deliver()
        self.assertEqual(node.store.state.audit_anchor.of("A"), (5, previous))
        self.assertEqual([e for e in logged if e["log_level"] >= LogLevel.warn], [])


class SupersededTests(ClusterAuditCase):

    def test_a_token_voided_at_its_position_is_not_audited_as_issued(self) -> None:
        """
        B issues a token for a client that A removed before it in the log:
        the token is dropped where it is applied, on every node, and B
        refuses it; no trail says it was issued: each says the change was
        superseded.
        """
        client = self.client(self.a)
        removing = self.a.connect().ask(wire.RemoveClient, id=client[0])
        self.assertEqual(removing, [])  # appended, not yet delivered
        answers: list[Any] = []
        self.b.http.post("http://127.0.0.1:9478/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                         auth=client).addBoth(answers.append)
        self.b.http.flush()
        self.settle()
        self.b.http.flush()
        self.assertEqual(answers[0].code, 503)
        for node in (self.a, self.b):
            issued = [(line["outcome"], line["node"]) for line in node.changes() if line["event"] == "token.issue"]
            self.assertEqual(issued, [("superseded", "B")])
        self.assertEqual(self.b.store.state.token_count(), 0)


    def test_a_snapshot_in_the_middle_of_a_voided_change_is_not_taken_for_ok(self) -> None:
        """
        A writes a snapshot when it has applied B's voided token but not
        the audit record after it (the log delivered part of an append):
        a node starting from that snapshot cannot see that the token was
        dropped, and does not write it as issued (the trails of A and B say
        superseded): its gap line names that change's position.
        """
        client = self.client(self.a)
        self.a.connect().ask(wire.RemoveClient, id=client[0])
        answers: list[Any] = []
        self.b.http.post("http://127.0.0.1:9478/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                         auth=client).addBoth(answers.append)
        self.b.http.flush()
        self.a.log.step(3)  # the removal, its audit record, the token
        self.successResultOf(self.a.store.compact())
        self.settle()
        self.b.http.flush()
        self.assertEqual(answers[0].code, 503)
        (position,) = [int(line["pos"]) for line in self.a.changes() if line["event"] == "token.issue"]
        self.assertEqual(self.shared.snapshot[0], position - 1)
        c = self.start("C")
        self.settle()
        self.assertEqual([line["outcome"] for line in c.changes() if line["event"] == "token.issue"], [])
        (gap,) = [line for line in c.lines() if line["event"] == "audit.gap"]
        self.assertEqual((gap["from"], gap["to"]), ("1", str(position)))


    def test_a_snapshot_in_the_middle_of_a_change_is_not_taken_for_superseded(self) -> None:
        """
        A writes a snapshot when it has applied its token but not the audit
        record after it: a node starting from that snapshot does not write
        the token as superseded (the trails of A and B say ok): its gap
        line names that change's position.
        """
        client = self.client(self.a)
        answers: list[Any] = []
        self.a.http.post("http://127.0.0.1:9478/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                         auth=client).addBoth(answers.append)
        self.a.http.flush()
        self.a.log.step(1)  # the token
        self.successResultOf(self.a.store.compact())
        self.settle()
        self.a.http.flush()
        self.assertEqual(answers[0].code, 200)
        (position,) = [int(line["pos"]) for line in self.b.changes()
                       if line["event"] == "token.issue" and line["outcome"] == "ok"]
        c = self.start("C")
        self.settle()
        self.assertEqual([line["outcome"] for line in c.changes() if line["event"] == "token.issue"], [])
        (gap,) = [line for line in c.lines() if line["event"] == "audit.gap"]
        self.assertEqual((gap["from"], gap["to"]), ("1", str(position)))


class FailingTrailTests(ClusterAuditCase):

    def test_a_trail_that_cannot_write_holds_a_bounded_backlog(self) -> None:
        """
        While C's trail cannot write (a full disk), the other nodes' changes
        go on: C holds no more of their events than its backlog, and once
        it writes again one line says which positions it left out.
        """
        disk = Disk()
        c = self.start("C", sync=disk.sync, limits=TrailLimits(backlog=2))
        self.settle()
        disk.full = True
        for n in range(4):
            self.admin(self.a, wire.AddUser, name=f"user{n}")
        self.assertIsNotNone(c.trail.failure)
        self.assertEqual(c.trail.backlog, 2)
        disk.full = False
        self.clock.advance(RETRY_SECONDS)
        self.assertIsNone(c.trail.failure)
        self.admin(self.a, wire.AddUser, name="last")
        added = [line["user"] for line in c.changes() if line["event"] == "user.add"]
        self.assertEqual(added, ["user0", "user1", "last"])
        (gap,) = [line for line in c.lines() if line["event"] == "audit.gap"]
        positions = [int(line["pos"]) for line in self.a.changes() if line["event"] == "user.add"]
        self.assertEqual((gap["from"], gap["to"], gap["reason"]), (str(positions[2]), str(positions[3]), "unwritten"))
        self.flushLoggedErrors(OSError)


    def test_a_trail_whose_write_hangs_holds_a_bounded_backlog(self) -> None:
        """
        C's trail write hangs (a stalled disk: no error, no end): the other
        nodes' changes go on, and C holds no more of their events than its
        backlog; once the write ends, one line says which it left out.
        """
        stalled = SteppingPool()
        c = self.start("C", pool=stalled, limits=TrailLimits(backlog=2))
        self.settle()
        stalled.run_all()
        c.trail.record_change("audit.test", "ok", {})  # a write in flight, that hangs
        for n in range(5):
            self.admin(self.a, wire.AddUser, name=f"user{n}")
        self.assertIsNone(c.trail.failure)
        self.assertEqual(c.trail.backlog, 2)
        stalled.run_all()
        self.admin(self.a, wire.AddUser, name="last")
        for _ in range(3):
            self.clock.advance(0)
            stalled.run_all()
        added = [line["user"] for line in c.changes() if line["event"] == "user.add"]
        self.assertEqual(added, ["user0", "user1", "last"])
        (gap,) = [line for line in c.lines() if line["event"] == "audit.gap"]
        self.assertEqual(gap["reason"], "unwritten")

    def test_what_a_node_left_out_is_not_lost_when_it_stops(self) -> None:
        """
        C's trail leaves out other nodes' events while it cannot write,
        writes again, and C stops before any other change: at its next
        start the trail has every change of the log, each once (it does
        not say it followed past what it left out).
        """
        disk = Disk()
        c = self.start("C", sync=disk.sync, limits=TrailLimits(backlog=1))
        self.settle()
        disk.full = True
        for n in range(3):
            self.admin(self.a, wire.AddUser, name=f"user{n}")
        disk.full = False
        self.clock.advance(RETRY_SECONDS)
        self.assertIsNone(c.trail.failure)
        # A record without audit events comes after them (an anchor).
        self.a.trail.retention.anchor(500, "ab" * 32)
        self.settle()
        c.stop()
        c = self.start("C", sync=disk.sync)
        self.settle()
        added = [line["user"] for line in c.changes() if line["event"] == "user.add"]
        self.assertEqual(added, ["user0", "user1", "user2"])
        self.flushLoggedErrors(OSError)

    def test_a_nodes_own_change_is_never_left_out(self) -> None:
        """
        C commits a change just as its trail stops writing, behind other
        nodes' changes that fill its backlog: its own events are kept for
        the trail to write, and C does not answer as if they were written.
        """
        disk = Disk()
        c = self.start("C", sync=disk.sync, limits=TrailLimits(backlog=1))
        self.settle()
        on_a = self.a.connect()
        for n in range(3):
            on_a.ask(wire.AddUser, name=f"user{n}")
            self.a.log.step()
            on_a.pump.flush()
        disk.full = True
        on_c = c.connect()
        mine = on_c.ask(wire.AddUser, name="carol")
        c.log.step()
        self.clock.advance(0)
        on_c.pump.flush()
        self.assertIsNotNone(c.trail.failure)
        self.assertIsInstance(mine[0], Failure, str(mine))
        disk.full = False
        self.clock.advance(RETRY_SECONDS)
        self.assertIn(("carol", "C"), [(line["user"], line["node"]) for line in c.changes()
                                       if line["event"] == "user.add"])
        self.flushLoggedErrors(OSError)


class RestartTests(ClusterAuditCase):

    def positions(self, node: AuditedNode) -> list[int]:
        return [int(line["pos"]) for line in node.changes()]

    def audit_positions(self) -> list[int]:
        return [n for n, (payload, _) in enumerate(self.shared.records, 1) if payload.startswith(b"audit\t")]

    def test_a_restarted_node_writes_what_it_missed_once(self) -> None:
        """
        B stops; A makes changes; B starts again from the log (a restart
        replays it after the snapshot): B's trail then has every change of
        the cluster exactly once, in log order, and again after another
        restart with nothing new.
        """
        self.client(self.a)
        self.b.stop()
        self.client(self.a)
        self.admin(self.a, wire.AddUser, name="carol")
        self.b = self.start("B")
        self.settle()
        self.assertEqual(self.positions(self.b), self.audit_positions())
        self.assertEqual(self.positions(self.a), self.audit_positions())
        self.b.stop()
        self.b = self.start("B")
        self.settle()
        self.admin(self.b, wire.AddUser, name="dave")
        self.assertEqual(self.positions(self.b), self.audit_positions())
        self.assertEqual(self.positions(self.a), self.audit_positions())
        self.assertEqual(last_position(str(self.b.directory)), self.audit_positions()[-1])
        self.assertIsNone(verify_trail(str(self.b.directory)).broken)

    def test_a_node_stopped_after_a_snapshot_sees_no_gap(self) -> None:
        """
        A snapshot is written past the last change that has events (a
        record without any comes after it); the nodes stop and start again
        from it: what they followed before they stopped is no gap.
        """
        self.client(self.a)
        self.a.trail.retention.anchor(500, "ab" * 32)
        self.settle()
        self.successResultOf(self.a.store.compact())
        self.assertGreater(self.shared.snapshot[0], self.audit_positions()[-1])
        for name in ("A", "B"):
            node = self.a if name == "A" else self.b
            node.stop()
            restarted = self.start(name)
            self.settle()
            self.assertEqual([line for line in restarted.lines() if line["event"] == "audit.gap"], [])
            self.assertEqual(last_position(str(restarted.directory)), self.shared.snapshot[0])

    def test_a_snapshot_that_passed_a_stopped_node_is_a_gap_in_its_trail(self) -> None:
        """
        B stops; A makes a change and writes a snapshot past it; B starts
        from that snapshot and cannot see the change: its trail says which
        log positions it did not see, in one line, and has what came after.
        """
        self.client(self.a)
        seen = self.positions(self.b)[-1]
        self.b.stop()
        self.admin(self.a, wire.AddUser, name="carol")
        self.successResultOf(self.a.store.compact())
        snapshot = self.shared.snapshot[0]
        self.admin(self.a, wire.AddUser, name="dave")
        self.b = self.start("B")
        self.settle()
        gaps = [line for line in self.b.lines() if line["event"] == "audit.gap"]
        self.assertEqual([(g["from"], g["to"], g["node"]) for g in gaps], [(str(seen + 1), str(snapshot), "B")])
        self.assertNotIn("carol", {line.get("user", line.get("name")) for line in self.b.changes()})
        self.assertEqual(self.positions(self.b)[-1], self.audit_positions()[-1])


    def test_a_node_killed_between_the_lines_of_one_change_writes_the_rest_once(self) -> None:
        """
        B is killed after the first of a change's two lines reached its
        trail, before the second did (they can be two writes: a rotation
        between them); at its next start the log delivers the change again:
        B writes the line it lacks, and not the one it has.
        """
        events = [audit("client.add", "ok", client_id="c1"), audit("client.secret", "ok", client_id="c1")]
        self.a.log.append([AuditRelay("A").payload(events, 0, self.clock.seconds())])
        self.settle()
        (position,) = {int(line["pos"]) for line in self.b.changes()}
        # Killed: its trail has the first line of the change only.
        self.b.log.close()
        self.b.trail.stopService()
        path = self.b.directory / TRAIL_NAME
        path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
        self.b = self.start("B")
        self.settle()
        self.assertEqual([(line["event"], int(line["pos"])) for line in self.b.changes()],
                         [("client.add", position), ("client.secret", position)])
        self.assertIsNone(verify_trail(str(self.b.directory)).broken)


    def test_a_node_killed_between_the_lines_of_a_change_a_snapshot_passed_says_so(self) -> None:
        """
        As above, but a snapshot passes the change while B is down: B
        cannot write the line it lacks, and its gap line names that
        change's position.
        """
        events = [audit("client.add", "ok", client_id="c1"), audit("client.secret", "ok", client_id="c1")]
        self.a.log.append([AuditRelay("A").payload(events, 0, self.clock.seconds())])
        self.settle()
        (position,) = {int(line["pos"]) for line in self.b.changes()}
        self.b.log.close()
        self.b.trail.stopService()
        path = self.b.directory / TRAIL_NAME
        path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
        self.successResultOf(self.a.store.compact())
        self.assertEqual(self.shared.snapshot[0], position)
        self.b = self.start("B")
        self.settle()
        gaps = [(line["from"], line["to"]) for line in self.b.lines() if line["event"] == "audit.gap"]
        self.assertEqual(gaps, [(str(position), str(position))])


def test_an_audit_record_changes_no_state_and_round_trips() -> None:
    """
    The C{audit} record carries its events through the codec unchanged (a
    tab in a field included) and changes nothing where it is applied.
    """
    from oauthd.state.model import State

    record = AuditNoted("n1", START, 2, (NotedEvent("client.add", "ok", {"client_id": "c\tx"}),))
    payload = encode(record)
    assert payload.count(b"\t") == 1
    assert decode(payload) == record
    state = State()
    state.apply([record], START)
    assert list(state.snapshot(START)) == []


def test_the_audit_records_bytes() -> None:
    """
    The C{audit} record and a node's trail anchor as the log holds them; a
    single daemon's anchor stays as it was.
    """
    from oauthd.state.audit_anchor import AuditAnchored

    record = AuditNoted("node-a", START, 1, (NotedEvent("token.issue", "ok", {"client": "c1"}),))
    golden = (b'audit\t{"at":1800000000,"events":[["token.issue","ok",{"client":"c1"}]],'
              b'"node":"node-a","records":1}')
    assert encode(record) == golden and decode(golden) == record
    assert encode(AuditAnchored(7, "ab" * 32, "node-a")) == b"audit-anchor\t7\t" + b"ab" * 32 + b"\tnode-a"
    assert encode(AuditAnchored(7, "ab" * 32)) == b"audit-anchor\t7\t" + b"ab" * 32
    assert decode(b"audit-anchor\t7\t" + b"ab" * 32 + b"\tnode-a") == AuditAnchored(7, "ab" * 32, "node-a")


def test_a_log_that_no_longer_reaches_the_trail_is_said_so(tmp_path: Path) -> None:
    """
    A trail that has events past the log's end (a database restored from an
    older backup) says so in one line, and counts on from the log's end: the
    events written there again are not taken for ones it has.
    """
    from oauthd.services.cluster_audit import ClusterTrail

    clock = Clock()
    clock.advance(START)
    trail = AuditTrail(str(tmp_path), clock, InlineReactor(), pool=InlinePool())
    trail.startService()
    trail.record_change("client.add", "ok", {"node": "A", "pos": "40"})
    cluster = ClusterTrail(trail, "B")
    assert cluster.position == 40
    cluster.start(31, 30)
    noted = AuditNoted("A", START, 1, (NotedEvent("user.add", "ok", {"user": "carol"}),))
    assert cluster.write(31, noted, False) is not None
    trail.stopService()
    lines = [json.loads(line) for line in (tmp_path / TRAIL_NAME).read_bytes().splitlines()]
    assert [(line["event"], line.get("trail"), line.get("log"), line.get("pos")) for line in lines[1:]] == [
        ("audit.rewound", "40", "30", None), ("user.add", None, None, "31")]
