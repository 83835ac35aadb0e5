"""
The audit trail under abuse and a full disk: refusals summed up, the trail
rotated and kept within its size and age, the backlog bounded, /healthz
telling the truth, changes refused while they cannot be audited, and the
trail resuming by itself when writes succeed again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.control import wire
from oauthd.services.audit import (
    FLUSH_SECONDS,
    RETRY_SECONDS,
    TRAIL_NAME,
    AuditTrail,
    TrailLimits,
    verify,
    verify_trail,
)
from oauthd.services.audit_files import rotated_files
from oauthd.services.audit_summary import IN_FULL, WINDOW
from oauthd.testing import InlinePool, InlineReactor, SteppingPool
from tests.helpers import START
from tests.oauth_helpers import TOKEN, USERINFO, OAuthCase
from tests.test_control import Harness

DAY = 86400


class Disk:
    """
    The trail's fdatasync, which a test can make fail as a full disk does.
    """

    def __init__(self) -> None:
        self.full = False

    def sync(self, fd: int) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        os.fdatasync(fd)


def lines_of(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def all_lines(directory: str) -> list[dict[str, Any]]:
    names = [*rotated_files(directory), TRAIL_NAME]
    return [line for name in names for line in lines_of(os.path.join(directory, name))]


class TrailOverHTTP(OAuthCase):
    """
    The HTTP API with the real trail (written inline) as its audit sink.
    """

    limits = TrailLimits()

    def setUp(self) -> None:
        super().setUp()
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.disk = Disk()
        self.trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=InlinePool(),
                                limits=self.limits, sync=self.disk.sync)
        self.trail.startService()
        self.addCleanup(self.trail.stopService)
        self.server.store.audit_sink = self.trail

    def issue(self) -> int:
        return self.request("POST", TOKEN, form={"grant_type": "client_credentials"},
                            auth=(self.client.id, self.secret)).code

    def junk(self, count: int) -> None:
        for _ in range(count):
            reply = self.request("GET", USERINFO, headers={"Authorization": "Bearer junk"})
            assert reply.code in (401, 429)  # the limiter steps in, refusing too

    def events(self) -> list[dict[str, Any]]:
        return all_lines(self.directory)


class AbuseTests(TrailOverHTTP):
    def test_junk_bearer_requests_cost_a_few_lines_and_a_summary(self) -> None:
        """
        500 requests with a junk bearer token write the first few refusals
        in full and, when the window closes, one line that counts the rest;
        the chain verifies.
        """
        self.junk(500)
        self.clock.advance(FLUSH_SECONDS)
        refused = [e for e in self.events() if e["event"] == "userinfo.refuse"]
        assert len({e["error"] for e in refused}) * IN_FULL == len(refused)
        self.clock.advance(WINDOW)
        self.clock.advance(FLUSH_SECONDS)
        summaries = [e for e in self.events() if e["event"] == "audit.summary"]
        assert {e["of"] for e in summaries} == {"userinfo.refuse"} and all(e["ip"] for e in summaries)
        assert sum(int(e["count"]) for e in summaries) == 500 - len(refused)
        assert os.path.getsize(os.path.join(self.directory, TRAIL_NAME)) < 4096
        assert verify_trail(self.directory).broken is None

    def test_a_token_is_answered_only_once_its_event_is_durable(self) -> None:
        """
        The token endpoint answers once the token's record and its audit
        event are both on disk: the event is in the file when the answer
        comes, not a batch later.
        """
        assert self.issue() == 200
        assert [e["event"] for e in self.events()] == ["token.issue"]


class FullDiskTests(TrailOverHTTP):
    limits = TrailLimits(backlog=200)

    def test_healthz_is_ok_while_all_is_well(self) -> None:
        reply = self.request("GET", "/healthz")
        assert (reply.code, reply.body) == (200, {"status": "ok"})

    def test_while_the_trail_cannot_write_changes_are_refused_and_healthz_says_why(self) -> None:
        self.disk.full = True
        assert self.issue() == 503
        reply = self.request("GET", "/healthz")
        assert reply.code == 503 and reply.body["status"] == "failing"
        assert "audit trail" in reply.body["reason"] and "No space left" in reply.body["reason"]
        tokens = len(self.server.state.tokens)
        assert self.issue() == 503
        assert len(self.server.state.tokens) == tokens  # refused at once: nothing changed
        assert len(self.flushLoggedErrors(OSError)) == 1

    def test_the_trail_resumes_by_itself_when_space_returns(self) -> None:
        """
        While the disk is full, events that change nothing beyond the backlog
        are dropped and counted; once a retry succeeds the trail writes what
        it kept and how many it dropped, /healthz is ok, changes are taken
        again, and the chain verifies.
        """
        self.disk.full = True
        assert self.issue() == 503  # its token was durable in the journal: its event is kept
        for n in range(300):
            self.trail("token.introspect", "ok", {"n": str(n)})
        self.clock.advance(RETRY_SECONDS)
        assert self.request("GET", "/healthz").code == 503
        self.disk.full = False
        self.clock.advance(RETRY_SECONDS)
        assert self.request("GET", "/healthz").code == 200
        assert self.issue() == 200
        events = self.events()
        names = [e["event"] for e in events]
        assert names.count("token.issue") == 2
        (dropped,) = [e for e in events if e["event"] == "audit.dropped"]
        # The backlog held the token's event and the refusal of its request.
        assert int(dropped["count"]) == 300 - (200 - 2)
        assert verify_trail(self.directory).broken is None
        self.flushLoggedErrors(OSError)

    def test_a_failed_journal_makes_healthz_say_to_restart(self) -> None:
        self.journal.fail(OSError(28, "No space left on device"))
        assert self.issue() == 503
        reply = self.request("GET", "/healthz")
        assert reply.code == 503
        assert "journal" in reply.body["reason"] and "restart oauthd" in reply.body["reason"]


class RotationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.clock = Clock()
        self.clock.advance(START)

    def open(self, **limits: int) -> AuditTrail:
        trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=InlinePool(),
                           limits=TrailLimits(**limits))
        trail.startService()
        return trail

    def record(self, trail: AuditTrail, count: int) -> None:
        for n in range(count):
            trail("client.update", "ok", {"client": f"c{n:04d}"})
            self.clock.advance(FLUSH_SECONDS)

    def test_a_full_file_is_rotated_and_the_chain_runs_on(self) -> None:
        trail = self.open(rotate_bytes=1000)
        self.record(trail, 40)
        self.successResultOf(trail.stopService())
        names = rotated_files(self.directory)
        assert len(names) >= 3 and names[0] == "audit.log.0000000000000001"
        found = verify_trail(self.directory)
        assert (found.broken, found.torn) == (None, None)
        events = all_lines(self.directory)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len([e for e in events if e["event"] == "client.update"]) == 40
        for older, newer in zip(names, [*names[1:], TRAIL_NAME]):
            first = lines_of(os.path.join(self.directory, newer))[0]
            last = lines_of(os.path.join(self.directory, older))[-1]
            assert (first["event"], first["file"], first["previous"]) == ("audit.continue", older, last["chain"])
            assert int(older.rsplit(".", 1)[1]) == lines_of(os.path.join(self.directory, older))[0]["seq"]
        # Each file verifies on its own, from its first line.
        assert verify(os.path.join(self.directory, names[1]))[1] is None

    def test_retention_removes_the_oldest_files_beyond_the_total_size(self) -> None:
        trail = self.open(rotate_bytes=1000, keep_bytes=3000)
        self.record(trail, 60)
        self.successResultOf(trail.stopService())
        sizes = sum(os.path.getsize(os.path.join(self.directory, n)) for n in os.listdir(self.directory))
        assert sizes <= 3000 + 1000
        events = all_lines(self.directory)
        assert events[0]["event"] == "audit.continue" and events[0]["seq"] > 1
        assert any(e["event"] == "audit.expire" and e["reason"] == "size" for e in events)
        found = verify_trail(self.directory)
        assert found.broken is None and found.starts_after == events[0]["previous"]

    def test_retention_removes_files_older_than_the_age_limit(self) -> None:
        trail = self.open(rotate_bytes=1000, keep_days=90)
        self.record(trail, 20)
        oldest = rotated_files(self.directory)[0]
        when = START - 91 * DAY
        os.utime(os.path.join(self.directory, oldest), (when, when))
        self.clock.advance(WINDOW)
        self.clock.advance(FLUSH_SECONDS)
        assert oldest not in rotated_files(self.directory)
        self.successResultOf(trail.stopService())
        (expiry,) = [e for e in all_lines(self.directory) if e["event"] == "audit.expire"]
        assert (expiry["file"], expiry["reason"]) == (oldest, "age")

    def test_a_reloaded_age_limit_is_the_one_retention_keeps_to(self) -> None:
        """
        A reload sets the trail's limits (L{oauthd.reload.Running.apply});
        retention removes by them from then on, not by those of the start.
        """
        trail = self.open(rotate_bytes=1000, keep_days=90)
        self.record(trail, 20)
        oldest = rotated_files(self.directory)[0]
        when = START - 10 * DAY
        os.utime(os.path.join(self.directory, oldest), (when, when))
        trail.limits = TrailLimits(rotate_bytes=1000, keep_days=5)
        self.clock.advance(WINDOW)
        self.clock.advance(FLUSH_SECONDS)
        assert oldest not in rotated_files(self.directory)
        self.successResultOf(trail.stopService())

    def test_a_restart_after_a_rotation_left_the_active_file_empty_continues_the_chain(self) -> None:
        trail = self.open()
        self.record(trail, 3)
        self.successResultOf(trail.stopService())
        os.rename(os.path.join(self.directory, TRAIL_NAME), os.path.join(self.directory, "audit.log.0000000000000001"))
        trail = self.open()
        self.record(trail, 1)
        self.successResultOf(trail.stopService())
        first = lines_of(os.path.join(self.directory, TRAIL_NAME))[0]
        assert (first["event"], first["seq"]) == ("audit.continue", 4)
        assert verify_trail(self.directory).broken is None


def control_with_trail(tmp_path: Path) -> tuple[Harness, SteppingPool, Disk, AuditTrail]:
    """
    A control socket harness whose store writes to a real audit trail in
    C{tmp_path}, on a pool the test steps and a disk the test can fill.
    """
    harness = Harness()
    pool = SteppingPool()
    disk = Disk()
    trail = AuditTrail(str(tmp_path), harness.clock, InlineReactor(), pool=pool, sync=disk.sync)
    trail.startService()
    harness.server.store.audit_sink = trail
    return harness, pool, disk, trail


def test_a_control_change_is_answered_once_its_event_is_durable(tmp_path: Path) -> None:
    """
    AddClient over the control socket is answered only once the event that
    describes it is written; while the trail cannot write, a change is
    refused as a storage error and makes no change.
    """
    harness, pool, disk, trail = control_with_trail(tmp_path)
    link = harness.connect()
    asked = link.ask(wire.AddClient, name="durable")
    assert asked == []
    while not asked:
        pool.run_all()
        harness.clock.advance(0)
        link.pump.flush()
    assert isinstance(asked[0], dict)
    assert [e["event"] for e in lines_of(str(tmp_path / TRAIL_NAME))] == ["client.add"]
    disk.full = True
    link.ask(wire.ListClients, search=None, cursor=None, limit=None)
    trail("client.show", "ok", {})
    harness.clock.advance(FLUSH_SECONDS)
    pool.run_all()
    clients = len(harness.server.state.clients)
    error = link.fails(wire.AddClient, name="refused")
    assert isinstance(error, wire.StorageError) and "audit trail" in str(error)
    assert len(harness.server.state.clients) == clients


def test_refusals_from_many_sources_are_bounded_per_window() -> None:
    """
    However many sources and reasons a window sees, at most MAX_IN_FULL
    refusals are written in full and at most MAX_KEYS + 1 summary lines
    follow; every refusal is counted once.
    """
    from oauthd.services.audit_summary import MAX_IN_FULL, MAX_KEYS, RefusalSummary

    summary = RefusalSummary(START)
    admitted = sum(
        summary.admit("token.refuse", {"error": "invalid_client", "ip": f"198.51.{n // 256}.{n % 256}"})
        for n in range(5000) for _ in range(2)
    )
    lines = summary.close()
    assert admitted == MAX_IN_FULL
    assert len(lines) <= MAX_KEYS + 1
    assert admitted + sum(int(line["count"]) for line in lines) == 10_000
    assert any(line["ip"] == "*" for line in lines)


def test_a_rotated_file_removed_from_the_middle_breaks_the_chain(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(START)
    trail = AuditTrail(str(tmp_path), clock, InlineReactor(), pool=InlinePool(),
                       limits=TrailLimits(rotate_bytes=1000))
    trail.startService()
    for n in range(40):
        trail("client.update", "ok", {"client": f"c{n:04d}"})
        clock.advance(FLUSH_SECONDS)
    trail.stopService()
    names = rotated_files(str(tmp_path))
    os.unlink(tmp_path / names[1])
    found = verify_trail(str(tmp_path))
    assert found.broken == (str(tmp_path / names[2]), 1)
