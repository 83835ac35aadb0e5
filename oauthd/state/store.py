"""
The store: the in-memory L{State} kept durable by an L{IEventLog}.

Every change goes through L{Store.commit}: the records are applied to memory
at once, on the reactor thread and in call order, so a second request sees
the first one's change (two refreshes of one token cannot both succeed); the
returned Deferred fires only once the records are on disk, and only then may
an edge answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.interfaces import IEventLog
from oauthd.eventlog import CompactionInProgress, check_payload
from oauthd.state.model import Record, State, encode, replay

log = Logger()

SWEEP_INTERVAL = 60
"""
Seconds between sweeps of expired tokens out of memory.
"""

SWEEP_SLICE = 1_000
"""
Tokens a sweep looks at per reactor turn (a few milliseconds of work).
"""

COMPACT_SLACK = 10_000
"""
Dead records tolerated beyond the live ones before compaction starts.
"""


class Store(Service):
    """
    State plus its log, and the housekeeping both need.

    @ivar state: the in-memory state; read it freely, change it only through
        L{commit}.
    @ivar log: the event log.
    """

    def __init__(self, state: State, log: IEventLog, clock: IReactorTime) -> None:
        self.state = state
        self.log = log
        self._clock = clock
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self._compacting = False

    @classmethod
    def load(cls, log: IEventLog, clock: IReactorTime) -> Store:
        """
        Build the state by replaying C{log} (blocking: call it before the
        reactor runs).
        """
        state = State()
        replay(state, log.replay(), clock.seconds())
        return cls(state, log, clock)

    def now(self) -> int:
        """
        The current time in whole seconds on the injected clock.
        """
        return int(self._clock.seconds())

    def commit(self, records: Sequence[Record]) -> Deferred[None]:
        """
        Apply C{records} to memory now and append them to the log.

        @return: fires when the records are durable; fails if the log cannot
            write them (the log then refuses every later append too).
        @raise ValueError: at once, with nothing applied, if a record cannot
            be encoded or journalled, or issues a token whose client or user
            is absent or disabled (memory would ignore it while the journal
            kept it, and a later compaction could bring it to life).
        """
        payloads = [check_payload(encode(r)) for r in records]
        for record in records:
            if record[0] == "tok" and not self.state.may_issue(record[3], record[4]):
                raise ValueError("a token for an absent or disabled client or user")
        self.state.load(payloads, self._clock.seconds())
        appended = self.log.append(payloads)
        self._maybe_compact()
        return appended

    def _maybe_compact(self) -> None:
        dead = self.log.record_count - self.state.live_records
        if not self._compacting and dead > self.state.live_records + COMPACT_SLACK:
            # A failure is logged by compact(); the next commit tries again.
            self.compact().addErrback(lambda _: None)

    def compact(self) -> Deferred[None]:
        """
        Rewrite the log as the live state, now.

        @return: fires when the new log is in place; fails with
            L{CompactionInProgress} if one is already running.
        """
        if self._compacting:
            return fail(CompactionInProgress())
        self._compacting = True
        before = self.log.record_count

        def finished(result: object) -> object:
            self._compacting = False
            if isinstance(result, Failure):
                log.failure("compaction failed", result)
                return result
            log.info(
                "compacted the journal from {before} to {after} records",
                before=before, after=self.log.record_count,
            )
            return None

        return self.log.compact(self.state.snapshot(self._clock.seconds())).addBoth(finished)

    def sweep(self) -> int:
        """
        Drop expired tokens from memory, a slice at a time: if more are due
        than one slice holds, the next slice runs on the next reactor turn,
        so a million tokens expiring in the same minute never stall it.
        """
        dropped, more = self.state.sweep(self._clock.seconds(), SWEEP_SLICE)
        if dropped:
            log.debug("swept {count} expired tokens", count=dropped)
        if more and self.running:
            self._clock.callLater(0, self.sweep)
        return dropped

    def startService(self) -> None:
        super().startService()
        # Tokens replay left out of the expiry buckets are bucketed from the
        # start, not a minute later.
        self._sweeper.start(SWEEP_INTERVAL, now=self.state.unbucketed > 0)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()
        return self.log.close()
