"""
Audit: every issue, refusal and revocation is a structured event, and no
secret (client secret, password, token, refresh token, app password) ever
appears in the log output of a whole scenario, nor in the journal.
"""

from __future__ import annotations

import base64
import gc
import json
import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from oauthd.services.audit import (
    FLUSH_SECONDS, GENESIS, RETRY_SECONDS, TRAIL_NAME, AuditTrail, chain_of, verify,
)
from tests.helpers import START
from oauthd.testing import InlinePool, InlineReactor, SteppingPool

from tests.oauth_helpers import (
    INTROSPECT,
    PASSWORD,
    REVOKE,
    SESSION,
    TOKEN,
    USERINFO,
    OAuthCase,
    bearer,
)


class AuditTests(OAuthCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        super().setUp()

    def audits(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("audit_event") == name]

    def scenario(self) -> list[str]:
        """
        A day in the life, including mistakes; returns every secret used.
        """
        secrets = [PASSWORD, self.secret]
        prom, prom_secret = self.add_client("Prometheus", scope="metrics introspect", introspect=True)
        secrets.append(prom_secret)
        # Client credentials, both ways, and wrong.
        cc = self.token({"grant_type": "client_credentials"}, auth=(prom.id, prom_secret)).body
        cc2 = self.post(TOKEN, {"client_id": prom.id, "client_secret": prom_secret}).body
        secrets += [cc["access_token"], cc2["access_token"]]
        self.token({"grant_type": "client_credentials"}, auth=(prom.id, prom_secret[:-1] + "!"))
        # A secret typed into the id field, a password into the username field.
        self.post(TOKEN, {"client_id": prom_secret, "client_secret": prom_secret})
        self.password_grant(username=PASSWORD, password=PASSWORD)
        self.password_grant(password=PASSWORD + "x")
        # Password grant, app password, refresh, reuse.
        grant = self.password_grant(scope="openid profile").body
        secrets += [grant["access_token"], grant["refresh_token"]]
        app, _ = self.app_password(scope="openid webdav")
        secrets.append(app)
        via_app = self.password_grant(password=app).body
        secrets += [via_app["access_token"], via_app["refresh_token"]]
        second = self.token({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).body
        secrets += [second["access_token"], second["refresh_token"]]
        self.token({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
        # Resource side.
        self.request("GET", USERINFO, headers=bearer(via_app["access_token"]))
        self.request("GET", USERINFO, headers=bearer(grant["access_token"]))
        self.request("GET", USERINFO, headers={"X-Auth-Token": cc["access_token"]})
        self.post(INTROSPECT, {"token": via_app["access_token"]}, auth=(prom.id, prom_secret))
        self.post(INTROSPECT, {"token": via_app["access_token"]}, headers=bearer(cc["access_token"]))
        # Sessions.
        session = self.post(SESSION, json_body={"username": "alice", "password": PASSWORD}).body
        secrets.append(session["access_token"])
        self.request("DELETE", SESSION, headers={"X-Session-ID": session["access_token"]})
        # Revocation.
        self.post(REVOKE, {"token": cc2["access_token"]}, auth=(prom.id, prom_secret))
        self.post(REVOKE, {"token": via_app["refresh_token"]}, auth=(self.client.id, self.secret))
        self.post(REVOKE, headers={"X-Auth-Token": app})
        # Rate limited.
        for _ in range(12):
            self.password_grant(password="guess " + PASSWORD)
        for _ in range(62):
            self.request("GET", USERINFO, headers=bearer(cc2["access_token"]))
        return secrets

    def test_no_secret_in_any_log_line_or_journal_record(self) -> None:
        secrets = self.scenario()
        assert len(self.events) > 50
        for event in self.events:
            text = formatEvent(event) + " " + repr({k: v for k, v in event.items() if k != "log_logger"})
            for secret in secrets:
                assert secret not in text, (secret, text)
                assert secret[:20] not in text, (secret, text)
        for payload in self.journal.payloads:
            for secret in secrets:
                assert secret.encode() not in payload

    def test_every_issue_refusal_and_revocation_is_audited(self) -> None:
        self.scenario()
        issued = self.audits("token.issue")
        assert {e["grant"] for e in issued} == {"client_credentials", "password", "refresh_token"}
        assert all(e["token"].startswith("sess") and e["client"] for e in issued)
        refused = self.audits("token.refuse")
        errors = {e["error"] for e in refused}
        assert {"invalid_client", "invalid_grant", "too_many_requests"} <= errors
        reuse = [e for e in refused if e.get("reason") == "refresh token reuse"]
        assert len(reuse) == 1 and reuse[0]["user"] == "alice"
        revoked = self.audits("token.revoke")
        assert {e.get("reason", e.get("by")) for e in revoked} >= {"refresh token reuse", "self"}
        assert self.audits("session.create") and self.audits("session.refuse") == []
        assert self.audits("userinfo.refuse") and self.audits("introspect.refuse") == []
        for event in self.events:
            if "audit_event" in event:
                assert event["log_namespace"] == "oauthd.audit"
                assert event["ip"] == "127.0.0.1"

    def test_unknown_names_are_not_logged(self) -> None:
        """
        A username or client id that matches nothing may be a secret typed
        into the wrong field: it is left out of the audit.
        """
        self.password_grant(username="hunter2hunter2", password="x")
        self.post(TOKEN, {"client_id": "s3cr3tvalue", "client_secret": "x"})
        text = " ".join(formatEvent(e) + repr(e) for e in self.events)
        assert "hunter2hunter2" not in text and "s3cr3tvalue" not in text
        assert len(self.audits("token.refuse")) == 2

    def test_audit_of_a_refusal_names_client_user_and_reason(self) -> None:
        self.password_grant(password="wrong")
        (event,) = self.audits("token.refuse")
        assert (event["client"], event["user"], event["error"]) == (self.client.id, "alice", "invalid_grant")
        assert event["reason"] == "wrong password or unknown user"
        assert "audit: token.refuse denied" in formatEvent(event)

    def hang_up(self, path: str, form: bytes) -> Request:
        """
        Send a request with this client's Basic credentials and hang up
        before the answer, as wrk does at the end of a run.
        """
        channel = DummyChannel()
        channel.site = self.http.site()
        request = Request(channel)
        basic = base64.b64encode(f"{self.client.id}:{self.secret}".encode())
        request.requestHeaders.setRawHeaders(b"authorization", [b"Basic " + basic])
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
        request.gotLength(len(form))
        request.handleContentChunk(form)
        request.requestReceived(b"POST", path.encode(), b"HTTP/1.1")
        request.connectionLost(Failure(ConnectionDone()))
        return request

    def test_a_token_issued_to_a_client_that_hung_up_is_durable_and_audited(self) -> None:
        """
        Hanging up does not cancel an issue already in memory: it becomes
        durable, and is audited (recorded with the change, before the
        journal is durable), and nothing is logged as an error.
        """
        self.journal.holding = True
        self.hang_up(TOKEN, b"grant_type=client_credentials")
        self.journal.release()
        (issued,) = self.audits("token.issue")
        assert issued["client"] == self.client.id
        token = self.server.find_token(issued["token"])
        assert token is not None and token.client_id == self.client.id
        gc.collect()
        assert self.flushLoggedErrors() == []

    def test_a_refusal_after_the_client_hung_up_is_audited(self) -> None:
        """
        A refusal that comes after the client hung up (here, the journal
        failing) is audited with what the request was for.
        """
        self.journal.holding = True
        self.hang_up(TOKEN, b"grant_type=client_credentials")
        self.journal.held.pop().errback(Failure(OSError("disk full")))
        (refused,) = self.audits("token.refuse")
        assert (refused["error"], refused["client"], refused["grant"]) == (
            "temporarily_unavailable", self.client.id, "client_credentials")
        assert refused["token"].startswith("sess")
        assert refused["reason"] == "journal: OSError"
        gc.collect()
        assert self.flushLoggedErrors() == []

    def test_an_error_after_the_client_hung_up_is_logged_once(self) -> None:
        """
        An error other than a refusal, after the client hung up (here, the
        audit sink failing to record the refusal that follows the journal's
        failure), is logged once, not lost and not repeated.
        """
        class BrokenSink:
            failure = None

            def __call__(self, event: str, outcome: str, fields: dict[str, str]) -> None:
                raise RuntimeError("sink broke")

            def record_change(self, event: str, outcome: str, fields: dict[str, str]) -> Deferred[None]:
                return succeed(None)

            def record_changes(self, events: object) -> None:
                return None

        self.journal.holding = True
        self.server.store.audit_sink = BrokenSink()
        self.hang_up(TOKEN, b"grant_type=client_credentials")
        self.journal.held.pop().errback(Failure(OSError("disk full")))
        gc.collect()
        assert len(self.flushLoggedErrors(RuntimeError)) == 1


class AuditTrailTests(SynchronousTestCase):
    """
    The hash-chained audit file: batched writes, a chain that any change
    breaks, and a restart that carries the chain on.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, TRAIL_NAME)
        self.clock = Clock()
        self.clock.advance(START)

    def open(self) -> AuditTrail:
        trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=InlinePool())
        trail.startService()
        return trail

    def lines(self) -> list[dict[str, Any]]:
        with open(self.path) as f:
            return [json.loads(line) for line in f]

    def test_events_are_written_in_batches_and_chained(self) -> None:
        trail = self.open()
        trail("token.issue", "ok", {"client": "c1", "token": "sess1", "ip": "127.0.0.1"})
        trail("token.refuse", "denied", {"error": "invalid_client"})
        assert self.lines() == []  # nothing written within the batch window
        self.clock.advance(FLUSH_SECONDS)
        first, second = self.lines()
        assert list(first) == ["seq", "time", "event", "outcome", "client", "ip", "token", "chain"]
        assert (first["seq"], first["time"], first["event"], second["seq"]) == (1, START, "token.issue", 2)
        assert verify(self.path) == (2, None)
        assert os.stat(self.path).st_mode & 0o777 == 0o600
        self.successResultOf(trail.stopService())

    def test_stopping_writes_what_is_pending(self) -> None:
        trail = self.open()
        trail("client.add", "ok", {"client": "c1"})
        self.successResultOf(trail.stopService())
        assert [line["event"] for line in self.lines()] == ["client.add"]

    def test_a_restart_carries_the_chain_on(self) -> None:
        trail = self.open()
        trail("user.add", "ok", {"user": "alice"})
        self.successResultOf(trail.stopService())
        trail = self.open()
        trail("user.remove", "ok", {"user": "alice"})
        self.successResultOf(trail.stopService())
        assert [line["seq"] for line in self.lines()] == [1, 2]
        assert verify(self.path) == (2, None)

    def test_any_change_breaks_the_chain_where_it_is(self) -> None:
        trail = self.open()
        for n in range(4):
            trail("token.issue", "ok", {"client": f"c{n}"})
        self.successResultOf(trail.stopService())
        with open(self.path, "rb") as f:
            original = f.read().splitlines(keepends=True)
        edits = {
            "changed": [original[0], original[1].replace(b'"c1"', b'"c9"'), *original[2:]],
            "removed": [original[0], *original[2:]],
            "swapped": [original[0], original[2], original[1], original[3]],
        }
        for name, lines in edits.items():
            with open(self.path, "wb") as f:
                f.writelines(lines)
            assert verify(self.path)[1] == 2, name

    def test_hostile_values_cannot_forge_a_line_or_the_chain(self) -> None:
        trail = self.open()
        trail("token.refuse", "denied", {
            "user": 'x"}\n{"seq":99,"chain":"' + "0" * 64, "chain": "f" * 64, "seq": "0",
        })
        self.successResultOf(trail.stopService())
        (line,) = self.lines()
        assert line["seq"] == 1 and line["chain"] != "f" * 64
        assert verify(self.path) == (1, None)

    def test_a_line_is_its_members_in_compact_ascii_json(self) -> None:
        """
        The bytes of a line: its members in their order, as compact JSON
        with non-ASCII text escaped, then the chain member.
        """
        trail = self.open()
        fields = {"z": "\u00e9t\u00e9 \u2028", "outcome": "forged", "a": 'q"uote\\', "ip": "::1"}
        self.successResultOf(trail.record_change("user.add", "ok", fields))
        with open(self.path, "rb") as f:
            line = f.read()
        members = {"seq": 1, "time": int(START), "event": "user.add", "outcome": "ok",
                   "a": 'q"uote\\', "ip": "::1", "z": "\u00e9t\u00e9 \u2028"}
        body = json.dumps(members, separators=(",", ":")).encode("ascii")
        chain = chain_of(GENESIS, body)
        assert line == body[:-1] + b',"chain":"' + chain.encode("ascii") + b'"}\n'
        assert trail.written_chain == chain

    def test_a_half_written_last_line_is_cut_off(self) -> None:
        trail = self.open()
        trail("user.add", "ok", {"user": "alice"})
        self.successResultOf(trail.stopService())
        with open(self.path, "ab") as f:
            f.write(b'{"seq":2,"time":')
        trail = self.open()
        trail("user.add", "ok", {"user": "bob"})
        self.successResultOf(trail.stopService())
        assert [line["seq"] for line in self.lines()] == [1, 2]
        assert verify(self.path) == (2, None)

    def test_events_recorded_while_stopping_are_written(self) -> None:
        """
        Stopping waits for the write in flight, then writes what was
        recorded meanwhile; the chain head logged at stop is the file's.
        """
        pool = SteppingPool()
        trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=pool)
        trail.startService()
        trail("one", "ok", {})
        self.clock.advance(FLUSH_SECONDS)
        assert len(pool.jobs) == 1
        stopped = trail.stopService()
        trail("two", "ok", {})
        pool.run_all()
        self.successResultOf(stopped)
        assert [line["event"] for line in self.lines()] == ["one", "two"]
        assert verify(self.path) == (2, None)

    def test_a_failed_write_leaves_no_torn_line_and_is_retried(self) -> None:
        failures: list[OSError] = []

        def fdatasync(fd: int) -> None:
            if failures:
                raise failures.pop()
            os.fdatasync(fd)

        trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=InlinePool(), sync=fdatasync)
        trail.startService()
        trail("one", "ok", {})
        self.clock.advance(FLUSH_SECONDS)
        failures.append(OSError(28, "No space left on device"))
        trail("two", "ok", {})
        self.clock.advance(FLUSH_SECONDS)
        assert [line["event"] for line in self.lines()] == ["one"]
        assert len(self.flushLoggedErrors(OSError)) == 1
        trail("three", "ok", {})
        self.clock.advance(RETRY_SECONDS)
        assert [line["event"] for line in self.lines()] == ["one", "two", "three"]
        assert verify(self.path) == (3, None)
        self.successResultOf(trail.stopService())
