"""
The audit events of a change (L{AuditTrail.record_changes}): durable
before the change is answered, one wait per change, no wait at all when
the trail wrote them inline.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.interfaces import AuditFailing
from oauthd.services.audit import RETRY_SECONDS, TRAIL_NAME, AuditTrail, TrailLimits, verify_trail
from oauthd.state.decision import AuditEvent, audit
from oauthd.testing import InlinePool, InlineReactor, SteppingPool
from tests.helpers import START

CHANGE = [audit("token.issue", "ok", client="c1", token="sess1"), audit("token.revoke", "ok", token="sess0")]


class RecordChangesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.clock = Clock()
        self.clock.advance(START)

    def open(self, pool: Any = None, **kw: Any) -> AuditTrail:
        trail = AuditTrail(self.directory, self.clock, InlineReactor(), pool=pool or InlinePool(), **kw)
        trail.startService()
        self.addCleanup(lambda: self.successResultOf(trail.stopService()))
        return trail

    def events(self) -> list[tuple[str, str]]:
        with open(os.path.join(self.directory, TRAIL_NAME)) as f:
            return [(line["event"], line.get("token", "")) for line in map(json.loads, f)]

    def test_written_inline_they_are_durable_when_it_returns(self) -> None:
        """
        A trail that writes inline has the change's events in its file, in
        order, when C{record_changes} returns, and says so with C{None}
        rather than a Deferred.
        """
        trail = self.open()
        self.assertIsNone(trail.record_changes(CHANGE))
        self.assertEqual(self.events(), [("token.issue", "sess1"), ("token.revoke", "sess0")])
        self.assertEqual(trail.written_seq, 2)
        self.assertIsNone(trail.record_changes([]))

    def test_one_wait_per_change_while_a_write_is_in_flight(self) -> None:
        """
        With a write in flight, a change waits: its Deferred fires once the
        write holding its events is durable, and the changes recorded
        meanwhile go into the next write together.
        """
        pool = SteppingPool()
        trail = self.open(pool)
        first = trail.record_changes(CHANGE)
        assert first is not None
        second = trail.record_changes([audit("client.add", "ok", client="c2")])
        third = trail.record_changes([audit("client.remove", "ok", client="c2")])
        assert second is not None and third is not None
        self.assertNoResult(first)
        pool.run_one()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.clock.advance(0)
        self.assertEqual(len(pool.jobs), 1)
        pool.run_one()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual([e for e, _ in self.events()], ["token.issue", "token.revoke", "client.add", "client.remove"])

    def test_a_failed_write_fails_the_change_and_keeps_its_events(self) -> None:
        """
        A write that fails fails the change with L{AuditFailing}; so does
        a change recorded while the trail fails; their events are written,
        chained, by the retry once the disk takes them.
        """
        failures = [OSError(28, "No space left on device")]

        def sync(fd: int) -> None:
            if failures:
                raise failures.pop()

        trail = self.open(sync=sync)
        self.failureResultOf(trail.record_changes(CHANGE), AuditFailing)  # type: ignore[arg-type]
        self.flushLoggedErrors(OSError)
        self.failureResultOf(trail.record_changes([audit("user.add", "ok", user="u")]),  # type: ignore[arg-type]
                             AuditFailing)
        self.clock.advance(RETRY_SECONDS)
        self.assertIsNone(trail.failure)
        self.assertEqual([e for e, _ in self.events()], ["token.issue", "token.revoke", "user.add"])
        self.assertIsNone(verify_trail(self.directory).broken)

    def test_a_rotation_written_inline_does_not_hold_the_change_back(self) -> None:
        """
        When the change's first line begins a new file, the rotation and
        the lines are both written before C{record_changes} returns.
        """
        trail = self.open(limits=TrailLimits(rotate_bytes=100))
        self.assertIsNone(trail.record_changes(CHANGE))
        self.assertIsNone(trail.record_changes([AuditEvent("user.add", "ok", {"user": "u"})]))
        self.assertEqual(self.events()[-1], ("user.add", ""))
        found = verify_trail(self.directory)
        self.assertEqual((found.broken, found.last_seq), (None, trail.written_seq))
