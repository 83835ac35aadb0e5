"""
C{GET /api/v1/metrics}: who may read it (RFC 6750's refusals otherwise),
what it says and that it moves with what the server does, OpenMetrics on
request, and that no user name, token or address ever shows in it.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from oauthd.eventlog import FileJournal
from oauthd.eventlog.errors import JournalFailed
from oauthd.services.audit import AuditTrail
from oauthd.state.decision import Decision
from oauthd.state.records import ClientRemoved
from oauthd.services.hashing import PasswordHasher
from oauthd.services.metrics import Histogram, Metrics, watch
from oauthd.testing import InlinePool, InlineReactor
from oauthd.web.api import OAuthHTTP
from tests.daemon import REPO, Daemon
from tests.postgres import fresh_database, shared_log_options
from tests.oauth_helpers import REVOKE, TOKEN, OAuthCase, Reply, bearer

METRICS = "/api/v1/metrics"
OPENMETRICS = "application/openmetrics-text; version=1.0.0;"
_PORTS = itertools.count(41000)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    Every sample of an exposition, by name and labels.
    """
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


class MetricsCase(OAuthCase):
    """
    The server in memory with its metrics kept, and a client that may read
    them (C{self.scraper}, C{self.scraper_secret}).
    """

    def setUp(self) -> None:
        super().setUp()
        self.metrics = Metrics()
        hasher = self.hasher.inner
        assert isinstance(hasher, PasswordHasher)
        watch(self.metrics, self.server.store, self.server.ctx, hasher=hasher)
        self.http = OAuthHTTP(self.server.ctx, self.server.store, self.metrics)
        self.treq = StubTreq(self.http.resource())
        self.scraper, self.scraper_secret = self.add_client("Prometheus", scope="metrics")

    def scrape_token(self) -> str:
        reply = self.token({"grant_type": "client_credentials", "scope": "metrics"},
                           auth=(self.scraper.id, self.scraper_secret))
        assert reply.code == 200, reply.body
        token: str = reply.body["access_token"]
        return token

    def scrape(self, token: str | None = None, headers: Mapping[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent.update(bearer(token))
        return self.request("GET", METRICS, headers=sent)

    def text(self) -> str:
        reply = self.scrape(self.scrape_token())
        assert reply.code == 200, reply.body
        assert isinstance(reply.body, bytes)
        return reply.body.decode("utf-8")


class AccessTests(MetricsCase):
    def test_no_token_gets_the_bare_challenge(self) -> None:
        reply = self.scrape()
        self.assertEqual((reply.code, reply.body), (401, {}))
        self.assertEqual(reply.header("WWW-Authenticate"), 'Bearer realm="oauthd"')

    def test_an_unknown_token_is_invalid(self) -> None:
        reply = self.scrape("not-a-token")
        self.assert_error(reply, 401, "invalid_token")
        self.assertIn('error="invalid_token"', reply.header("WWW-Authenticate") or "")

    def test_a_token_without_the_metrics_scope_is_refused_403(self) -> None:
        secret, _ = self.app_password(scope="albums")
        reply = self.scrape(secret)
        self.assert_error(reply, 403, "insufficient_scope")
        challenge = reply.header("WWW-Authenticate") or ""
        self.assertIn('error="insufficient_scope"', challenge)
        self.assertIn('scope="metrics"', challenge)

    def test_the_metrics_scope_reads_them(self) -> None:
        reply = self.scrape(self.scrape_token())
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(reply.header("Cache-Control"), "no-store")
        self.assertIn(b"# TYPE oauthd_tokens_issued_total counter", reply.body)

    def test_every_scope_reads_them(self) -> None:
        secret, _ = self.app_password(scope="*")
        self.assertEqual(self.scrape(secret).code, 200)

    def test_a_malformed_request_gets_the_challenge_with_invalid_request(self) -> None:
        token = self.scrape_token()
        for headers in ({"Authorization": ["Bearer " + token, "Bearer " + token]},
                        {"X-Auth-Token": [token, token]}):
            reply = self.scrape(headers=headers)
            self.assert_error(reply, 400, "invalid_request")
            challenge = reply.header("WWW-Authenticate") or ""
            self.assertTrue(challenge.startswith('Bearer realm="oauthd"'), challenge)
            self.assertIn('error="invalid_request"', challenge)
            self.assertNotIn(token, challenge)

    def test_a_revoked_token_is_refused(self) -> None:
        token = self.scrape_token()
        self.assertEqual(self.scrape(token).code, 200)
        revoked = self.post(REVOKE, {"token": token}, auth=(self.scraper.id, self.scraper_secret))
        self.assertEqual(revoked.code, 200)
        self.assert_error(self.scrape(token), 401, "invalid_token")

    def test_a_refusal_is_audited_as_a_metrics_refusal(self) -> None:
        events: list[str] = []
        self.server.store.observe = lambda event: events.append(event.event)
        self.scrape("not-a-token")
        self.assertEqual(events, ["metrics.refuse"])

    def test_openmetrics_when_the_scraper_asks(self) -> None:
        accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        reply = self.scrape(self.scrape_token(), {"Accept": accept})
        self.assertEqual(reply.code, 200)
        self.assertTrue((reply.header("Content-Type") or "").startswith(OPENMETRICS))
        self.assertTrue(reply.body.endswith(b"# EOF\n"))
        self.assertIn(b"# UNIT oauthd_journal_bytes bytes", reply.body)

    def test_any_accept_header_gets_an_answer(self) -> None:
        token = self.scrape_token()
        for accept, openmetrics in (
            ("application/openmetrics-text; version=a", True),
            ("application/openmetrics-text; version=\xff", True),
            ("application/openmetrics-text;q=0, text/plain", False),
            ("application/openmetrics-text;;;", True),
            ("text/html, */*", False),
            (";;,,", False),
        ):
            reply = self.scrape(token, {"Accept": accept})
            self.assertEqual(reply.code, 200, accept)
            self.assertEqual(reply.body.endswith(b"# EOF\n"), openmetrics, accept)

    def test_without_metrics_the_route_is_not_there(self) -> None:
        self.http = OAuthHTTP(self.server.ctx, self.server.store)
        self.treq = StubTreq(self.http.resource())
        self.assert_error(self.scrape(self.scrape_token()), 404, "not_found")


class ContentTests(MetricsCase):
    def test_tokens_issued_by_grant_and_client(self) -> None:
        before = self.text()
        self.assertEqual(self.token({"grant_type": "client_credentials"}).code, 200)
        after = self.text()
        labels = {"grant": "client_credentials", "client": self.client.id}
        self.assertEqual(value(after, "oauthd_tokens_issued_total", **labels)
                         - value(before, "oauthd_tokens_issued_total", **labels), 1)

    def test_registered_clients_share_one_label(self) -> None:
        registered, secret = self.add_client("Self-registered", scope="*",
                                             registration_digest="0" * 64)
        self.assertEqual(self.token({"grant_type": "client_credentials"},
                                    auth=(registered.id, secret)).code, 200)
        text = self.text()
        self.assertEqual(value(text, "oauthd_tokens_issued_total",
                               grant="client_credentials", client="registered"), 1)
        self.assertNotIn(registered.id, text)

    def test_a_token_counts_once_durable_and_not_when_the_journal_fails(self) -> None:
        scraper = self.scrape_token()

        def issued() -> float:
            reply = self.scrape(scraper)
            return value(reply.body.decode("utf-8"), "oauthd_tokens_issued_total",
                         grant="client_credentials", client=self.client.id)

        self.journal.holding = True
        answered = self.send("POST", TOKEN, form={"grant_type": "client_credentials"},
                             auth=(self.client.id, self.secret))
        self.treq.flush()
        held, self.journal.held = self.journal.held, []
        self.journal.holding = False
        self.assertEqual(issued(), 0)
        held[0].errback(Failure(JournalFailed("the disk went away")))
        self.assertEqual(self.read(answered).code, 503)
        self.assertEqual(issued(), 0)

    def test_a_registered_client_gone_before_its_token_is_durable_stays_unnamed(self) -> None:
        """
        A self-registered client that deletes its registration while its
        token waits for the journal is still counted as C{registered}: its
        id never becomes a label value.
        """
        registered, secret = self.add_client("Self-registered", scope="*",
                                             registration_digest="0" * 64)
        self.journal.holding = True
        answered = self.send("POST", TOKEN, form={"grant_type": "client_credentials"},
                             auth=(registered.id, secret))
        self.treq.flush()
        self.server.store.commit(Decision(None, [ClientRemoved(registered.id)]))
        self.journal.holding = False
        self.journal.release()
        self.assertEqual(self.read(answered).code, 200)
        text = self.text()
        self.assertNotIn(registered.id, text)
        self.assertEqual(value(text, "oauthd_tokens_issued_total",
                               grant="client_credentials", client="registered"), 1)


        self.assert_error(self.token({"grant_type": "client_credentials"},
                                     auth=(self.client.id, "wrong")), 401, "invalid_client")
        self.assert_error(self.request("GET", "/api/v1/oauth/userinfo", headers=bearer("nope")),
                          401, "invalid_token")
        self.assert_error(self.password_grant(password="wrong"), 400, "invalid_grant")
        text = self.text()
        for reason in ("invalid_client", "invalid_token", "invalid_grant"):
            self.assertEqual(value(text, "oauthd_authentication_failures_total", reason=reason), 1,
                             reason)

    def test_revocations(self) -> None:
        issued = self.token({"grant_type": "client_credentials"})
        self.post(REVOKE, {"token": issued.body["access_token"]}, auth=(self.client.id, self.secret))
        self.post(REVOKE, {"token": "unknown"}, auth=(self.client.id, self.secret))
        self.assertEqual(value(self.text(), "oauthd_token_revocations_total", via="request"), 1)

    def test_rate_limit_refusals_by_limit(self) -> None:
        for _ in range(10):
            self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"))
        refused = self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"))
        self.assertEqual(refused.code, 429)
        text = self.text()
        self.assertEqual(value(text, "oauthd_rate_limited_total", limit="login-ip"), 1)
        self.assertEqual(value(text, "oauthd_rate_limited_total", limit="client"), 1)
        self.assertEqual(value(text, "oauthd_authentication_failures_total",
                               reason="invalid_client"), 10)

    def test_a_refusal_names_only_the_limit_that_refused(self) -> None:
        other, other_secret = self.add_client("Other", scope="*")
        for client_id in [self.client.id] * 5 + [other.id] * 5:
            self.token({"grant_type": "client_credentials"}, auth=(client_id, "wrong"))
        refused = self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"))
        self.assertEqual(refused.code, 429)
        text = self.text()
        self.assertEqual(value(text, "oauthd_rate_limited_total", limit="login-ip"), 1)
        self.assertEqual(value(text, "oauthd_rate_limited_total", limit="client"), 0)

    def test_live_counts_are_read_at_scrape_time(self) -> None:
        text = self.text()
        state = self.server.state
        self.assertEqual(value(text, "oauthd_tokens"), state.token_count())
        self.assertEqual(value(text, "oauthd_clients"), 2)
        self.assertEqual(value(text, "oauthd_users"), 1)
        self.assertEqual(value(text, "oauthd_browser_sessions"), 0)
        journal = self.server.store.log
        self.assertEqual(value(text, "oauthd_journal_records"), journal.record_count)
        self.assertEqual(value(text, "oauthd_journal_bytes"), journal.byte_count)
        self.assertEqual(value(text, "oauthd_journal_live_ratio"),
                         min(1.0, state.live_records / journal.record_count))

    def test_compaction_time_and_duration(self) -> None:
        self.assertEqual(value(self.text(), "oauthd_journal_last_compaction_timestamp_seconds"), 0)
        self.journal.holding = True
        compacted = self.server.store.compact()
        self.clock.advance(2.5)
        self.journal.holding = False
        self.journal.release()
        self.successResultOf(compacted)
        text = self.text()
        self.assertEqual(value(text, "oauthd_journal_last_compaction_timestamp_seconds"),
                         self.clock.seconds())
        self.assertEqual(value(text, "oauthd_journal_last_compaction_duration_seconds"), 2.5)

    def test_a_compaction_under_a_clock_stepped_back_took_no_negative_time(self) -> None:
        self.journal.holding = True
        compacted = self.server.store.compact()
        self.clock.rightNow -= 3600
        self.journal.holding = False
        self.journal.release()
        self.successResultOf(compacted)
        self.assertEqual(value(self.text(), "oauthd_journal_last_compaction_duration_seconds"), 0)

    def test_signing_key_ages(self) -> None:
        keys = self.server.state.keys.published(self.server.ctx.now())
        self.assertTrue(keys)
        key = keys[0]
        labels = {"kid": key.kid, "alg": key.alg,
                  "state": self.server.state.keys.state(key, self.server.ctx.now())}
        before = value(self.text(), "oauthd_signing_key_age_seconds", **labels)
        self.clock.advance(100)
        self.assertEqual(value(self.text(), "oauthd_signing_key_age_seconds", **labels) - before, 100)

    def test_password_checks_wait_in_the_hashing_pool(self) -> None:
        self.assertEqual(self.password_grant().code, 200)
        text = self.text()
        self.assertGreaterEqual(value(text, "oauthd_hash_wait_seconds_count"), 1)
        self.assertEqual(value(text, "oauthd_hash_queue_jobs"), 0)

    def test_no_user_names_tokens_or_addresses(self) -> None:
        app, token = self.app_password(scope="*")
        granted = self.password_grant()
        self.assertEqual(granted.code, 200)
        self.password_grant(username="mallory", password="guess")
        self.request("GET", "/api/v1/oauth/userinfo", headers=bearer(app))
        self.request("GET", "/api/v1/session/" + token.handle, headers=bearer(app))
        reply = self.scrape(app)
        assert isinstance(reply.body, bytes)
        text = reply.body.decode("utf-8")
        secrets = [app, token.handle, granted.body["access_token"], granted.body["refresh_token"],
                   granted.body["session_id"]]
        for forbidden in ["alice", "mallory", "Alice", "127.0.0.1", *secrets]:
            self.assertNotIn(forbidden, text)


class HttpTests(MetricsCase):
    """
    The site counts and times every request by its route's template.
    """

    def send_raw(self, *requests: bytes) -> bytes:
        site = self.http.site()
        address = IPv4Address("TCP", "127.0.0.1", next(_PORTS))
        protocol = site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        for request in requests:
            protocol.dataReceived(request)
        return transport.value()

    def test_requests_by_route_template_status_and_latency(self) -> None:
        body = b"grant_type=client_credentials"
        token = (b"POST " + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
                 % len(body) + body)
        self.journal.holding = True
        self.send_raw(
            token,
            b"GET /api/v1/oauth/register/client-one HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/v1/oauth/register/client-two HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        self.journal.holding = False
        text = self.text()
        registration = "/api/v1/oauth/register/<string:client_id>"
        self.assertEqual(value(text, "oauthd_http_requests_total", endpoint=TOKEN, status="401"), 1)
        self.assertEqual(value(text, "oauthd_http_requests_total",
                               endpoint=registration, status="401"), 2)
        self.assertEqual(value(text, "oauthd_http_requests_total", endpoint="other", status="404"), 1)
        for raw in ("client-one", "client-two", "/no/such/path"):
            self.assertNotIn(raw, text)
        self.assertEqual(value(text, "oauthd_http_request_duration_seconds_count",
                               endpoint=registration), 2)

    def test_answers_outside_any_request_count_as_other(self) -> None:
        """
        The 408 to a request too slow to arrive and the 503 to a connection
        over the cap are counted too (under C{other}): an operator watching
        5xx must see the cap reached.
        """
        site = self.http.site()
        slow = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", next(_PORTS)))
        timed_out = StringTransport()
        slow.makeConnection(timed_out)
        slow.dataReceived(b"GET /api/v1/metrics HTTP/1.1\r\n")
        self.clock.advance(self.config.header_timeout)
        self.assertIn(b"408 ", timed_out.value())
        site.max_connections = site.connections
        busy = StringTransport()
        site.buildProtocol(IPv4Address("TCP", "127.0.0.1", next(_PORTS))).makeConnection(busy)
        self.assertIn(b"503 ", busy.value())
        text = self.text()
        self.assertEqual(value(text, "oauthd_http_requests_total", endpoint="other", status="408"), 1)
        self.assertEqual(value(text, "oauthd_http_requests_total", endpoint="other", status="503"), 1)

    def test_a_clock_stepped_back_times_no_negative_latency(self) -> None:
        """
        The site's clock is the wall clock: stepped back during a request,
        it times it 0, not minus an hour (a histogram's sum only grows).
        """
        self.journal.holding = True
        body = b"grant_type=client_credentials"
        basic = base64.b64encode(f"{self.client.id}:{self.secret}".encode())
        transport = StringTransport()
        protocol = self.http.site().buildProtocol(IPv4Address("TCP", "127.0.0.1", next(_PORTS)))
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + basic
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
            % len(body) + body)
        self.clock.rightNow -= 3600
        self.journal.release()
        self.journal.holding = False
        self.assertIn(b"HTTP/1.1 200 ", transport.value())
        text = self.text()
        self.assertEqual(value(text, "oauthd_http_request_duration_seconds_count", endpoint=TOKEN), 1)
        self.assertEqual(value(text, "oauthd_http_request_duration_seconds_sum", endpoint=TOKEN), 0)

    def test_latency_runs_from_arrival_to_answer(self) -> None:
        self.journal.holding = True
        body = b"grant_type=client_credentials"
        basic = base64.b64encode(f"{self.client.id}:{self.secret}".encode())
        site = self.http.site()
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", next(_PORTS)))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + basic
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
            % len(body) + body)
        self.clock.advance(0.3)
        self.journal.release()
        self.journal.holding = False
        self.assertIn(b"HTTP/1.1 200 ", transport.value())
        text = self.text()
        bucket = "oauthd_http_request_duration_seconds_bucket"
        self.assertEqual(value(text, bucket, endpoint=TOKEN, le="0.25"), 0)
        self.assertEqual(value(text, bucket, endpoint=TOKEN, le="0.5"), 1)
        self.assertAlmostEqual(value(text, "oauthd_http_request_duration_seconds_sum",
                                     endpoint=TOKEN), 0.3)


class ServiceTests(MetricsCase):
    """
    What the journal, the audit trail and the hashing pool tell the metrics.
    """

    def test_journal_fsyncs_and_group_commits(self) -> None:
        directory = self.mktemp()
        synced: list[int] = []
        ticks = iter(range(1000))
        metrics = Metrics(timer=lambda: next(ticks) * 0.001)
        journal = FileJournal.open(directory, InlineReactor(), pool=InlinePool(),  # type: ignore[arg-type]
                                   fsync_function=metrics.timed_fsync(synced.append))
        journal.on_batch = metrics.batch
        self.successResultOf(journal.append([b"one", b"two", b"three"]))
        self.successResultOf(journal.close())
        fsync = metrics.fsync
        self.assertEqual(sum(fsync.counts), len(synced))
        self.assertGreaterEqual(len(synced), 1)
        self.assertAlmostEqual(fsync.total, 0.001 * len(synced))
        self.assertEqual(metrics.batches.buckets()[2], ("4.0", 1.0))
        self.assertEqual(metrics.batches.buckets()[1], ("2.0", 0.0))

    def test_a_bucket_holds_what_equals_its_bound(self) -> None:
        histogram = Histogram((1, 2))
        for observed in (1, 1.5, 3):
            histogram.observe(observed)
        self.assertEqual(histogram.buckets(), [("1.0", 1.0), ("2.0", 2.0), ("+Inf", 3.0)])
        self.assertEqual(histogram.total, 5.5)

    def test_audit_backlog(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        trail = AuditTrail(directory, self.clock, InlineReactor(), pool=InlinePool())
        watch(self.metrics, self.server.store, self.server.ctx, trail=trail)
        trail("token.refuse", "denied", {"error": "invalid_client"})
        trail("token.refuse", "denied", {"error": "invalid_grant"})
        self.assertEqual(value(self.text(), "oauthd_audit_backlog_events"), trail.backlog)
        self.assertGreater(trail.backlog, 0)

    def test_the_readme_names_real_series(self) -> None:
        """
        Every series the README's Monitoring table names is one a scrape
        has (the process's own and Prometheus's C{up} aside).
        """
        directory = self.mktemp()
        os.mkdir(directory)
        watch(self.metrics, self.server.store, self.server.ctx,
              trail=AuditTrail(directory, self.clock, InlineReactor(), pool=InlinePool()))
        self.metrics.timed_fsync(os.fsync)  # as the daemon's file journal is
        families = list(text_string_to_metric_families(self.text()))
        exposed = {f.name + ("_total" if f.type == "counter" else "") for f in families}
        readme = (REPO / "README.md").read_text()
        monitoring = readme[readme.index("### Monitoring"):]
        table = monitoring[monitoring.index("| series |"):monitoring.index("\n\n", monitoring.index("| series |"))]
        named = [re.sub(r"{.*", "", name) for row in table.splitlines()[2:]
                 for name in re.findall(r"`([^`]+)`", row.split("|")[1])]
        self.assertIn("oauthd_tokens_issued_total", named)
        # A shared log's series are checked on a daemon over PostgreSQL
        # (test_on_postgresql_no_journal_histograms_stay_empty).
        self.assertEqual([n for n in named if n != "up" and n not in exposed
                          and not n.startswith("oauthd_eventlog_")], [])

    def test_a_failing_reading_leaves_the_rest(self) -> None:
        def broken() -> float:
            raise RuntimeError("gone")

        self.metrics.gauge("oauthd_broken", "Fails.", broken)
        text = self.text()
        self.assertNotIn("oauthd_broken", text)
        self.assertIn("oauthd_tokens ", text)
        self.flushLoggedErrors(RuntimeError)




def scraped(daemon: Daemon) -> tuple[dict[str, Any], str]:
    """
    A client made with oauthctl on C{daemon}, and the metrics it read with
    a token it got.
    """
    sock = daemon.data / "control.sock"
    done = subprocess.run(
        [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), "--json", "clients", "add",
         "--name", "Prometheus", "--scope", "metrics"],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    client: dict[str, Any] = json.loads(done.stdout)
    form = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
    request = urllib.request.Request(daemon.url + TOKEN, data=form, headers={
        "Authorization": "Basic " + base64.b64encode(
            f"{client['id']}:{client['secret']}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        token = json.load(response)["access_token"]
    scrape = urllib.request.Request(daemon.url + METRICS, headers=bearer(token))
    with urllib.request.urlopen(scrape, timeout=10) as response:
        return client, response.read().decode("utf-8")


def test_the_daemon_keeps_metrics(tmp_path: Path) -> None:
    """
    The real daemon wires its metrics: a client made with oauthctl gets a
    token and reads them, and they count the journal's fsyncs and group
    commits, the password pool and the audit trail.
    """
    daemon = Daemon(tmp_path / "data")
    try:
        client, text = scraped(daemon)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert value(text, "oauthd_tokens_issued_total", grant="client_credentials",
                 client=client["id"]) == 1
    assert value(text, "oauthd_journal_fsync_duration_seconds_count") >= 2
    assert value(text, "oauthd_journal_group_commit_records_count") >= 2
    assert value(text, "oauthd_clients") == 1
    assert "oauthd_audit_backlog_events" in text and "oauthd_hash_queue_jobs" in text
    assert value(text, "process_open_fds") > 0


def test_on_postgresql_no_journal_histograms_stay_empty(tmp_path: Path) -> None:
    """
    On a PostgreSQL event log the daemon keeps its metrics, but has no
    journal file to fsync: its fsync and group commit histograms are
    absent, not series at zero forever that an alert would take for calm.
    """
    daemon = Daemon(tmp_path / "data", *shared_log_options(tmp_path, fresh_database()))
    try:
        client, text = scraped(daemon)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert value(text, "oauthd_tokens_issued_total", grant="client_credentials",
                 client=client["id"]) == 1
    assert value(text, "oauthd_journal_records") > 0
    assert "oauthd_journal_fsync_duration_seconds" not in text
    assert "oauthd_journal_group_commit_records" not in text
    assert "reading the metric" not in daemon.output()
    # The shared log's readings: lag, follow latency, claim conflicts.
    assert ("oauthd_eventlog_lag_seconds", frozenset()) in samples(text)
    assert 0 <= value(text, "oauthd_eventlog_lag_seconds") < 5
    assert value(text, "oauthd_eventlog_follow_seconds_count") >= 1
    assert ("oauthd_eventlog_claim_conflicts_total", frozenset()) in samples(text)
