"""
A node on a shared event log serves bearer checks and introspection from
memory only while it has reached the log recently (C{eventlog_max_lag}):
past that, they answer 503 with C{Retry-After}; C{/healthz} says the lag
and whether the log is reachable.  A local journal is never stale.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq

from oauthd.testing import InlinePool, InlineReactor
from oauthd.web.api import OAuthHTTP
from tests.helpers import START, make_config, make_server
from tests.oauth_helpers import INTROSPECT, USERINFO, OAuthCase, bearer
from tests.postgres import fresh_database


class StalenessTests(OAuthCase):
    config_values = {"eventlog_max_lag": 5}

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from oauthd.eventlog.postgresql import open_postgres_log

        self.clock = Clock()
        self.clock.advance(START)
        self.log: Any = open_postgres_log(fresh_database(), InlineReactor(), pool=InlinePool(), listen=False,
                                          clock=self.clock, partition_size=4)
        self.addCleanup(self.log.close)
        # As the store does when it follows the log.
        self.delivered: list[int] = []
        self.log.follow(lambda position, payload: self.delivered.append(position))
        self.config = make_config(**self.config_values)
        self.server = make_server(self.config, clock=self.clock, journal=self.log)
        self.http = OAuthHTTP(self.server.ctx, self.server.store)
        self.treq = StubTreq(self.http.resource())
        self.client, self.secret = self.add_client("App", scope="*", grant_types=("client_credentials",),
                                                   introspect=True)
        self.access = self.token({"grant_type": "client_credentials"}).body["access_token"]

    def test_fresh_node_answers(self) -> None:
        reply = self.post(INTROSPECT, {"token": self.access}, auth=(self.client.id, self.secret))
        self.assertEqual((reply.code, reply.body["active"]), (200, True))
        health = self.request("GET", "/healthz")
        self.assertEqual(health.code, 200)
        self.assertEqual(health.body["eventlog"], {"lag": 0.0, "max_lag": 5, "reachable": True})

    def test_stale_node_refuses_bearer_checks_and_introspection(self) -> None:
        """
        Past C{eventlog_max_lag} without reaching the log, introspection
        and userinfo answer 503 with Retry-After, and /healthz fails with
        the lag; the next read of the log makes the node fresh again.
        """
        self.clock.advance(5.5)
        reply = self.post(INTROSPECT, {"token": self.access}, auth=(self.client.id, self.secret))
        self.assert_error(reply, 503, "temporarily_unavailable")
        self.assertEqual(reply.header("retry-after"), "1")
        reply = self.request("GET", USERINFO, headers=bearer(self.access))
        self.assertEqual((reply.code, reply.header("retry-after")), (503, "1"))
        health = self.request("GET", "/healthz")
        self.assertEqual(health.code, 503)
        self.assertIn("the shared event log was last reached 5.5 s ago", health.body["reason"])
        self.assertEqual(health.body["eventlog"]["lag"], 5.5)
        self.successResultOf(self.log.sync())
        reply = self.post(INTROSPECT, {"token": self.access}, auth=(self.client.id, self.secret))
        self.assertEqual(reply.code, 200)


    def test_changes_answer_503_then_recover(self) -> None:
        """
        A change the shared log cannot take (its connection broke) answers
        503 with Retry-After, not a 500; reads go on; the node reconnects.
        """
        from tests.test_shared_log import sql

        sql(self.log.uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name LIKE 'oauthd %% writer'")
        replies = [self.token({"grant_type": "client_credentials"}) for _ in range(3)]
        for reply in replies[:2]:
            self.assert_error(reply, 503, "temporarily_unavailable")
            self.assertEqual(reply.header("retry-after"), "1")
        self.assertEqual(replies[2].code, 200)
        reply = self.post(INTROSPECT, {"token": self.access}, auth=(self.client.id, self.secret))
        self.assertEqual((reply.code, reply.body["active"]), (200, True))


    def test_a_node_passed_by_compaction_refuses(self) -> None:
        """
        A node that compaction passed while it was cut off stops following
        the log: bearer checks answer 503 at once, and /healthz says why.
        """
        from oauthd.eventlog import LogGap
        from oauthd.eventlog.postgresql import open_postgres_log
        from tests.test_shared_log import sql

        other = open_postgres_log(self.log.uri, InlineReactor(), pool=InlinePool(), listen=False, touch_every=0)
        self.addCleanup(other.close)
        other.follow(lambda position, payload: None)
        sql(self.log.uri, "UPDATE oauthd_nodes SET seen = now() - interval '1 hour' WHERE id = %s", self.log.node)
        for i in range(20):
            self.successResultOf(other.append([b"x"]))
            if i in (9, 19):
                self.successResultOf(other.compact([]))
        gaps: list[LogGap] = []
        self.log.on_gap = gaps.append
        self.failureResultOf(self.log.sync(), LogGap)
        self.assertEqual(len(gaps), 1)
        reply = self.post(INTROSPECT, {"token": self.access}, auth=(self.client.id, self.secret))
        self.assert_error(reply, 503, "temporarily_unavailable")
        health = self.request("GET", "/healthz")
        self.assertEqual(health.code, 503)
        self.assertIn("compaction dropped positions", health.body["reason"])

def test_local_journal_is_never_stale() -> None:
    """
    With the data directory's journal, /healthz says nothing of a lag.
    """
    from tests.oauth_helpers import OAuthCase as Case

    class Probe(Case):
        def runTest(self) -> None:
            self.clock.advance(3600)
            health = self.request("GET", "/healthz")
            assert (health.code, health.body) == (200, {"status": "ok"})
            reply = self.request("GET", USERINFO, headers=bearer("x"))
            assert reply.code == 401

    probe = Probe()
    probe.setUp()
    probe.runTest()

