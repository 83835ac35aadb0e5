"""
Rate-limit failures shared between the nodes of a shared log
(L{oauthd.eventlog.postgresql.failures}): what one node charged, the others
charge too, sent gathered and as keyed digests only; and with two real
daemons over PostgreSQL, a guesser who spreads over both nodes is refused
on the second once the first has counted the limit.
"""

from __future__ import annotations

import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase


from oauthd.eventlog.postgresql.failures import EVERY, MAX_COUNT, MAX_PAYLOAD, FailureShare, key_digest
from oauthd.protocol.limits import LOGIN_IP, RateLimiter
from tests.daemon import Daemon
from tests.helpers import make_config
from tests.postgres import fresh_database, shared_log_options
from tests.test_multinode_postgres import ctl, post

SECRET = b"k" * 32


class Node:
    def __init__(self, name: str, clock: Clock, sent: list[tuple[str, str]]) -> None:
        self.limiter = RateLimiter(clock.seconds)
        self.limiter.configure(make_config())
        self.limiter.digest = key_digest(SECRET)
        self.share = FailureShare(name, clock, lambda payload: sent.append((name, payload)))
        self.limiter.on_charge = self.share.add

    def receive(self, payload: str) -> None:
        for rule, digest, count in self.share.read(payload):
            for _ in range(count):
                self.limiter.charge_shared(rule, digest)


class SharedFailuresTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.sent: list[tuple[str, str]] = []
        self.a = Node("a", self.clock, self.sent)
        self.b = Node("b", self.clock, self.sent)

    def deliver(self) -> None:
        for _, payload in self.sent:
            for node in (self.a, self.b):
                node.receive(payload)
        self.sent.clear()

    def test_charged_on_a_counts_on_b(self) -> None:
        for _ in range(LOGIN_IP.burst):
            self.a.limiter.charge(LOGIN_IP, "192.0.2.7")
        self.assertEqual(self.sent, [])
        self.clock.advance(EVERY)
        [(_, payload)] = self.sent
        self.assertNotIn("192.0.2.7", payload)
        self.assertEqual(self.b.limiter.retry_after(LOGIN_IP, "192.0.2.7"), 0)
        self.deliver()
        self.assertGreater(self.b.limiter.retry_after(LOGIN_IP, "192.0.2.7"), 0)
        # A node's own failures come back to it and are not counted twice.
        self.assertEqual(self.a.limiter.retry_after(LOGIN_IP, "192.0.2.7"),
                         self.b.limiter.retry_after(LOGIN_IP, "192.0.2.7"))
        self.assertEqual(self.b.limiter.retry_after(LOGIN_IP, "192.0.2.8"), 0)

    def test_many_keys_split_over_payloads(self) -> None:
        for n in range(500):
            self.a.limiter.charge(LOGIN_IP, f"10.0.{n // 256}.{n % 256}")
        self.clock.advance(EVERY)
        self.assertGreater(len(self.sent), 1)
        self.assertTrue(all(len(payload.encode()) <= MAX_PAYLOAD for _, payload in self.sent))
        self.deliver()
        self.assertEqual(len(self.b.limiter), 500)

    def test_a_flood_on_a_counts_on_b(self) -> None:
        """
        More failures of one key in one gathering than a line may carry
        (a fast guesser on A) are sent as the most a line carries, not as a
        count B ignores.
        """
        for _ in range(MAX_COUNT + 500):
            self.a.limiter.charge(LOGIN_IP, "192.0.2.7")
        self.clock.advance(EVERY)
        self.deliver()
        self.assertGreater(self.b.limiter.retry_after(LOGIN_IP, "192.0.2.7"), 0)

    def test_malformed_lines_are_ignored(self) -> None:
        self.b.receive("a\nlogin-ip abc\nlogin-ip abc x\nlogin-ip abc 0\nnot-a-rule abc 3\n")
        self.b.receive("b\nlogin-ip abc 3")
        self.assertEqual(len(self.b.limiter), 0)
        self.b.receive("a\nlogin-ip abc 3")
        self.assertEqual(len(self.b.limiter), 1)


def test_guesses_spread_over_two_daemons(tmp_path: Path) -> None:
    """
    Wrong client secrets sent to A up to the limit of the address: B, which
    was sent none, refuses the next with 429 soon after (within three of its
    own, where ten would be needed without A's).
    """
    uri = fresh_database()
    a = Daemon(tmp_path / "a", *shared_log_options(tmp_path, uri))
    try:
        b = Daemon(tmp_path / "b", *shared_log_options(tmp_path, uri))
        try:
            added = ctl(a, "clients", "add", "--name", "app", "--json")
            wrong = (added["id"], "not-the-secret")
            form = {"grant_type": "client_credentials"}
            codes = [post(a, "/api/v1/oauth/token", form, wrong)[0] for _ in range(LOGIN_IP.burst)]
            assert codes == [401] * LOGIN_IP.burst, codes
            assert post(a, "/api/v1/oauth/token", form, wrong)[0] == 429
            deadline = time.monotonic() + 5
            # B charges its own failures too: it must refuse long before
            # they alone would reach the limit (the first attempt after
            # A's failures arrived, a fraction of a second later).
            codes = []
            for _ in range(3):
                time.sleep(1)
                codes.append(post(b, "/api/v1/oauth/token", form, wrong)[0])
                if codes[-1] == 429:
                    break
            assert codes[-1] == 429, codes
        finally:
            assert b.stop() == 0, b.output()
    finally:
        assert a.stop() == 0, a.output()
