"""
The audit trail's promises under many interleavings (seeded, so each run is
the same): changes recorded inline or with writes in flight, results
delivered at once or later (as the writer thread's are), a disk that fills
and empties, rotations, callbacks that record further changes, and a stop
part way. Whatever the order, each change is answered once, and answered
as durable only once its lines are fdatasync'd; stopping ends; the chain
verifies and holds every change answered as durable.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from oauthd.services.audit import FLUSH_SECONDS, RETRY_SECONDS, AuditTrail, TrailLimits, verify_trail
from oauthd.services.audit_files import trail_files
from oauthd.state.decision import audit
from oauthd.testing import InlinePool, InlineReactor, SteppingPool
from tests.helpers import START


class LaterReactor:
    """
    A reactor whose C{callFromThread} delivers only when the test says so,
    as a real one does on a later turn.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.calls.append((f, args))

    def deliver(self) -> None:
        f, args = self.calls.pop(0)
        f(*args)


class Schedule:
    """
    One seeded run against a trail in C{directory}.
    """

    def __init__(self, directory: str, seed: int, pool: Any, reactor: Any) -> None:
        self.rnd = random.Random(seed)
        self.pool, self.reactor = pool, reactor
        self.clock = Clock()
        self.clock.advance(START)
        self.full = False
        self.durable: set[str] = set()
        # Per change: how often it was answered, and how.
        self.answers: dict[str, list[str]] = {}
        self.ids = 0
        limits = TrailLimits(rotate_bytes=self.rnd.choice([300, 2000, 1 << 20]), backlog=50)
        self.trail = AuditTrail(directory, self.clock, reactor, pool=pool, limits=limits, sync=self.sync)
        self.trail.startService()

    def sync(self, fd: int) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        size = os.fstat(fd).st_size
        self.durable.update(json.loads(line).get("id", "") for line in os.pread(fd, size, 0).splitlines())

    def next_id(self) -> str:
        self.ids += 1
        return f"i{self.ids}"

    def verdict(self, change: str) -> str:
        """How a change answered as recorded stands: in the system log once the trail closed."""
        if self.trail._closed:
            return "logged"
        return "durable" if change in self.durable else "early"

    def follow(self, change: str, result: Deferred[None] | None) -> None:
        answers = self.answers.setdefault(change, [])
        if result is None:
            answers.append(self.verdict(change))
            return

        def answered(outcome: object) -> None:
            if isinstance(outcome, Failure):
                answers.append("failed")
            else:
                answers.append(self.verdict(change))
            if not self.trail._closed and self.rnd.random() < 0.3:
                # A callback that records another change.
                again = self.next_id()
                self.follow(again, self.trail.record_change("client.add", "ok", {"id": again}))

        result.addBoth(answered)

    def step(self) -> None:
        op = self.rnd.random()
        if op < 0.25:
            change = self.next_id()
            count = self.rnd.randint(1, 3)
            events = [audit("token.issue", "ok", client=f"c{n}", id=change) for n in range(count)]
            self.follow(change, self.trail.record_changes(events))
        elif op < 0.4:
            change = self.next_id()
            self.follow(change, self.trail.record_change("user.add", "ok", {"id": change}))
        elif op < 0.55:
            self.trail("token.refuse", "denied", {"ip": f"10.0.0.{self.rnd.randint(1, 9)}"})
        elif op < 0.7:
            if isinstance(self.pool, SteppingPool) and self.pool.jobs and self.rnd.random() < 0.5:
                self.pool.run_one()
            elif isinstance(self.reactor, LaterReactor) and self.reactor.calls:
                self.reactor.deliver()
        elif op < 0.8:
            self.clock.advance(self.rnd.choice([0, FLUSH_SECONDS, RETRY_SECONDS]))
        elif op < 0.9:
            self.full = not self.full
        else:
            self.trail.next_write()

    def pump(self, done: Callable[[], bool]) -> None:
        """
        Run the jobs and deliveries, and let time pass (no more than a
        retry's wait and a batch's), until C{done()}.
        """
        deadline = self.clock.seconds() + RETRY_SECONDS + FLUSH_SECONDS
        while not done():
            if isinstance(self.pool, SteppingPool) and self.pool.jobs:
                self.pool.run_one()
            elif isinstance(self.reactor, LaterReactor) and self.reactor.calls:
                self.reactor.deliver()
            else:
                due = min((call.getTime() for call in self.clock.getDelayedCalls()), default=deadline + 1)
                if due > deadline:
                    return
                self.clock.advance(max(0.0, due - self.clock.seconds()))

    def settle(self) -> None:
        """
        Once the disk takes writes again, the running trail answers every
        change by itself; then it stops.
        """
        self.full = False
        if self.trail.running:
            self.pump(lambda: not self.trail.backlog and all(self.answers.values()))
            assert all(self.answers.values()), "a change is never answered while the trail runs"
        stopped: list[object] = []
        self.trail.stopService().addBoth(stopped.append)
        self.pump(lambda: bool(stopped))
        assert stopped == [None], "stopping the trail did not end"


POOLS: dict[str, Callable[[], Any]] = {"inline": InlinePool, "stepped": SteppingPool}
REACTORS: dict[str, Callable[[], Any]] = {"at once": InlineReactor, "later": LaterReactor}


@pytest.mark.parametrize("reactor", sorted(REACTORS))
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_every_change_is_answered_once_and_only_once_durable(tmp_path: Any, pool: str, reactor: str) -> None:
    for seed in range(30):
        directory = str(tmp_path / str(seed))
        os.makedirs(directory)
        run = Schedule(directory, seed, POOLS[pool](), REACTORS[reactor]())
        for _ in range(run.rnd.randint(5, 120)):
            run.step()
        run.settle()
        assert all(len(a) == 1 for a in run.answers.values()), (seed, run.answers)
        assert not [c for c, a in run.answers.items() if a == ["early"]], (seed, run.answers)
        found = verify_trail(directory)
        assert found.broken is None, (seed, found)
        written = set()
        for path in trail_files(directory):
            with open(path) as f:
                written.update(json.loads(line).get("id", "") for line in f)
        assert {c for c, a in run.answers.items() if a == ["durable"]} <= written, seed
        assert run.trail.written_seq == found.last_seq, seed
