"""
Records applied at their log position give the same state on every node,
whenever each node applies them: what a node's clock reads when a record
reaches it (late, or on a node that starts later) does not change whether
it is admitted.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from oauthd.eventlog import MemorySharedLog
from oauthd.protocol.admin.tokens import issue_by_hand
from oauthd.state.entities import Client
from oauthd.state.follower import follow
from oauthd.web.api import OAuthHTTP
from tests.helpers import make_config, make_server
from tests.oauth_helpers import PASSWORD, REVOKE, TOKEN
from tests.test_multinode import MultiNodeCase, Node


def token_keys(node: Node) -> set[int]:
    """
    The keys of every token C{node} holds, expired but not swept included.
    """
    return set(node.server.state.tokens)


def held(node: Node, now: float) -> list[bytes]:
    """
    The state C{node} holds, as its snapshot at C{now} writes it, but for
    the signing keys (the test servers make their own, each at its start).
    """
    return [p for p in node.server.state.snapshot(now) if not p.startswith(b"key\t")]


class AppliedLateTests(MultiNodeCase):
    """
    The same records, applied at other times on other nodes.
    """

    def test_expired_token_still_counts_for_a_node_that_starts(self) -> None:
        """
        A short-lived grant B made for alice, which A had not seen when it
        made her another at a client allowing one grant per user, keeps A's
        grant out on the running nodes; a node that starts once B's grant
        has expired drops A's grant too (its replay must not skip what had
        not expired when the later record was applied).
        """
        limited: Client
        limited, secret = self.settled(self.a.server.add_client(
            "Limited", scope="*", max_tokens=1, access_ttl=10, refresh_ttl=10,
            grant_types=("password", "refresh_token")))
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        on_b = self.b.send(TOKEN, form, (limited.id, secret))
        self.b.treq.flush()
        self.b.log.step()
        self.assertEqual(self.read(self.b, on_b)[0], 200)
        on_a = self.a.send(TOKEN, form, (limited.id, secret))
        self.a.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.a, on_a)[0], 503)
        self.clock.advance(60)
        started = Node(self.shared, self.clock)
        self.shared.deliver()
        now = self.clock.seconds()
        self.assertEqual(len(self.a.server.state.user_tokens("alice", now)), 0)
        self.assertEqual(len(started.server.state.user_tokens("alice", now)), 0)
        self.assertEqual(token_keys(started), token_keys(self.a))
        self.assertEqual(held(started, now), held(self.a, now))

    def test_refresh_decided_just_before_expiry_applied_after(self) -> None:
        """
        A refresh token presented a moment before it expires, whose rotation
        reaches the log a moment after: it rotates (the claim held), rather
        than being taken for a reuse that revokes the grant.
        """
        short: Client
        short, secret = self.settled(self.a.server.add_client(
            "Short", scope="*", refresh_ttl=100, grant_types=("password", "refresh_token")))
        login = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                            (short.id, secret))
        self.a.treq.flush()
        self.shared.deliver()
        code, body = self.read(self.a, login)
        self.assertEqual(code, 200, body)
        self.clock.advance(99.5)
        rotating = self.a.send(TOKEN, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                               (short.id, secret))
        self.a.treq.flush()
        self.clock.advance(1)
        self.shared.deliver()
        self.a.treq.flush()
        self.shared.deliver()
        code, rotated = self.read(self.a, rotating)
        self.assertEqual(code, 200, rotated)
        now = self.clock.seconds()
        self.assertEqual(held(self.a, now), held(self.b, now))


class ClosedNode(Node):
    """
    A node whose registration needs an initial access token.
    """

    def __init__(self, shared: MemorySharedLog, clock: Clock) -> None:
        self.log = shared.node()
        config = make_config(registration="closed")
        self.server = make_server(config, clock=clock, journal=self.log)
        follow(self.server.store)
        self.treq = StubTreq(OAuthHTTP(self.server.ctx, self.server.store).resource())

    def register(self, token: str) -> Deferred[Any]:
        return self.treq.request("POST", "http://oauthd.test/api/v1/oauth/register",
                                 data=json.dumps({"redirect_uris": ["https://rp.example/cb"]}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})


class LimitsRacedTests(MultiNodeCase):
    """
    Limits that two nodes each decide against the state they hold, raced:
    the log's order decides, on every node alike.
    """

    def test_grant_limit_raced(self) -> None:
        """
        One user logs in at a client allowed one grant per user, on A and
        on B at once: each node revoked the same older grant, so the later
        login is over the limit and dropped on both; each node holds one.
        """
        limited: Client
        limited, secret = self.settled(self.a.server.add_client(
            "Limited", scope="*", max_tokens=1, grant_types=("password", "refresh_token")))
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        first = self.a.send(TOKEN, form, (limited.id, secret))
        self.a.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.a, first)[0], 200)
        on_a = self.a.send(TOKEN, form, (limited.id, secret))
        on_b = self.b.send(TOKEN, form, (limited.id, secret))
        self.a.treq.flush()
        self.b.treq.flush()
        self.shared.deliver()
        codes = sorted([self.read(self.a, on_a)[0], self.read(self.b, on_b)[0]])
        self.assertEqual(codes[0], 200)
        self.assertNotEqual(codes[1], 200)
        now = self.clock.seconds()
        for node in (self.a, self.b):
            grants = {t.grant for t in node.server.state.user_tokens("alice", now) if t.client_id == limited.id}
            self.assertEqual(len(grants), 1)
        self.assertEqual(held(self.a, now), held(self.b, now))

    def test_initial_access_token_uses_raced(self) -> None:
        """
        An initial access token good for one registration, presented on A
        and on B at once: one registration is made, on both nodes.
        """
        a, b = ClosedNode(self.shared, self.clock), ClosedNode(self.shared, self.clock)
        secret, _ = self.settled(a.server.store.commit(issue_by_hand(
            a.server.ctx, label="iat", scope="register", lifetime=3600, uses=1)).addCallback(
                lambda minted: (minted.secret, minted.token)))
        on_a, on_b = a.register(secret), b.register(secret)
        a.treq.flush()
        b.treq.flush()
        self.shared.deliver()
        a.treq.flush()
        b.treq.flush()
        self.shared.deliver()
        codes = sorted([self.read(a, on_a)[0], self.read(b, on_b)[0]])
        self.assertEqual(codes[0], 201)
        self.assertNotEqual(codes[1], 201)
        for node in (a, b):
            self.assertEqual(sum(1 for c in node.server.state.clients.values() if c.registration_digest), 1)


class RevokedBeforeSeenTests(MultiNodeCase):
    """
    A revocation or a log-out on a node that has not yet delivered the
    token it names.
    """

    def test_revoked_on_b_before_b_delivered_it(self) -> None:
        """
        A token issued on A, revoked on B before B delivered it: B waits for
        the log rather than answer 200 for a token it does not know (which
        would leave it live everywhere), then revokes it on both.
        """
        sent = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                           (self.client.id, self.secret))
        self.a.treq.flush()
        self.a.log.step()
        code, body = self.read(self.a, sent)
        self.assertEqual(code, 200, body)
        revoking = self.b.send(REVOKE, {"token": body["access_token"]}, (self.client.id, self.secret))
        self.ended_once_b_delivered_it(revoking, body["access_token"])

    def ended_once_b_delivered_it(self, ending: Deferred[Any], token: str) -> None:
        """
        C{ending}, a request to B that ends C{token} (issued on A, not yet
        delivered to B), waits for the log, then answers 200 with the token
        inactive on both nodes.
        """
        self.b.treq.flush()
        self.assertNoResult(ending)
        self.b.log.step()
        self.b.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.b, ending)[0], 200)
        for node in (self.a, self.b):
            self.assertFalse(self.active(node, token))

    def test_session_ended_on_b_before_b_delivered_it(self) -> None:
        """
        A session opened on A, ended on B (log out) before B delivered it:
        B waits for the log rather than refuse a token it does not know yet
        (leaving the session open), then ends it on both.
        """
        opened = self.a.treq.request("POST", "http://oauthd.test/api/v1/session",
                                     data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json"})
        self.a.treq.flush()
        self.a.log.step()
        code, body = self.read(self.a, opened)
        self.assertEqual(code, 200, body)
        ending = self.b.treq.request("DELETE", "http://oauthd.test/api/v1/session",
                                     headers={"Authorization": "Bearer " + body["access_token"]})
        self.ended_once_b_delivered_it(ending, body["access_token"])


class SweptOnOneNodeTests(MultiNodeCase):
    """
    Each node sweeps what expired on its own timer: what a node's state
    shows at a given time (its snapshot, the status's state digest) does
    not depend on whether it swept yet.
    """

    def test_swept_on_one_node(self) -> None:
        """
        A refresh family and a limited initial access token that expired,
        swept on A only: A and B show the same state.
        """
        short: Client
        short, secret = self.settled(self.a.server.add_client(
            "Short", scope="*", access_ttl=50, refresh_ttl=100, grant_types=("password", "refresh_token")))
        login = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                            (short.id, secret))
        self.a.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.a, login)[0], 200)
        self.settled(self.a.server.store.commit(issue_by_hand(
            self.a.server.ctx, label="iat", scope="register", lifetime=50, uses=2)))
        self.clock.advance(200)
        self.a.server.store.sweep()
        now = self.clock.seconds()
        self.assertEqual(held(self.a, now), held(self.b, now))


class SnapshotAtItsPositionTests(MultiNodeCase):
    """
    Compaction writes a node's snapshot a slice at a time while the node
    goes on applying the log; a node that starts from it replays the
    records after its position against it, admitting each by what the
    snapshot holds.  So what admission counts is read when the snapshot is
    taken, not as the slices are written.
    """

    def test_tokens_and_families_as_when_taken(self) -> None:
        issued = self.login(self.a)
        state = self.a.server.state
        now = self.clock.seconds()
        expected = list(state.snapshot(now))
        taken = state.snapshot(now)
        first = next(taken)
        own = self.settled(self.a.server.issue_token(scope="*", lifetime=3600, client=self.client))[1]
        self.assertEqual(self.call(self.a, REVOKE, {"token": issued["refresh_token"]})[0], 200)
        self.settled(self.a.server.revoke(own))
        self.assertEqual([first, *taken], expected)


class SweptBeforeAppliedTests(MultiNodeCase):
    def one_grant_per_user(self) -> tuple[Client, str]:
        """
        A client allowing each user one grant, whose tokens live 10 s.
        """
        made: tuple[Client, str] = self.settled(self.a.server.add_client(
            "Limited", scope="*", max_tokens=1, access_ttl=10, refresh_ttl=10,
            grant_types=("password", "refresh_token")))
        return made

    def test_a_node_behind_does_not_sweep_what_it_has_yet_to_count(self) -> None:
        """
        A node a minute and a half behind the log (PostgreSQL restarted,
        say) has not swept, when it applies a record, a token that expired
        only after that record was decided: the record is admitted there
        as on the nodes that applied it at once.
        """
        c = Node(self.shared, self.clock)
        self.shared.deliver()
        limited, secret = self.one_grant_per_user()
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        on_b = self.b.send(TOKEN, form, (limited.id, secret))
        self.b.treq.flush()
        self.b.log.step()
        self.a.log.step()
        self.assertEqual(self.read(self.b, on_b)[0], 200)
        on_c = c.send(TOKEN, form, (limited.id, secret))
        c.treq.flush()
        self.b.log.step()
        self.clock.advance(90)
        self.a.server.store.sweep()
        self.shared.deliver()
        self.assertEqual(self.read(c, on_c)[0], 503)
        now = self.clock.seconds()
        self.assertEqual(token_keys(self.a), token_keys(self.b))
        self.assertEqual(held(self.a, now), held(self.b, now))

    def test_a_snapshot_keeps_what_a_record_after_it_counts(self) -> None:
        """
        A snapshot written just after a token expired still holds it (as
        the nodes do, SWEEP_GRACE): a node that starts from it admits the
        record after its position that was decided while the token was
        live, as the running nodes did.
        """
        c = Node(self.shared, self.clock)
        self.shared.deliver()
        limited, secret = self.one_grant_per_user()
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        on_b = self.b.send(TOKEN, form, (limited.id, secret))
        self.b.treq.flush()
        self.b.log.step()
        self.a.log.step()
        self.assertEqual(self.read(self.b, on_b)[0], 200)
        on_c = c.send(TOKEN, form, (limited.id, secret))
        c.treq.flush()
        self.clock.advance(20)
        self.successResultOf(self.a.server.store.compact())
        self.shared.deliver()
        self.assertEqual(self.read(c, on_c)[0], 503)
        started = Node(self.shared, self.clock)
        self.shared.deliver()
        now = self.clock.seconds()
        self.assertEqual(token_keys(started), token_keys(self.a))
        self.assertEqual(held(started, now), held(self.a, now))
