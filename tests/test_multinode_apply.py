"""
Records applied at their log position give the same state on every node,
whenever each node applies them: what a node's clock reads when a record
reaches it (late, or on a node that starts later) does not change whether
it is admitted.
"""

from __future__ import annotations

from tests.oauth_helpers import PASSWORD, TOKEN
from tests.test_multinode import MultiNodeCase, Node

from oauthd.state.entities import Client


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
        A short-lived token B issued, which A had not seen when it issued
        another at the client's limit of one, keeps A's token out on the
        running nodes; a node that starts once B's token has expired drops
        A's token too (its replay must not skip what had not expired when
        the later record was applied).
        """
        limited: Client
        limited, _ = self.settled(self.a.server.add_client("Limited", max_tokens=1))
        on_b = self.b.server.issue_token(scope="*", lifetime=10, client=limited)
        self.b.log.step()
        self.successResultOf(on_b)
        on_a = self.a.server.issue_token(scope="*", lifetime=3600, client=limited)
        self.shared.deliver()
        self.failureResultOf(on_a)
        self.clock.advance(60)
        started = Node(self.shared, self.clock)
        self.shared.deliver()
        now = self.clock.seconds()
        self.assertEqual(len(self.a.server.state.own_tokens(limited.id, now)), 0)
        self.assertEqual(len(started.server.state.own_tokens(limited.id, now)), 0)
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
