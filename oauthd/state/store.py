"""
The store: the in-memory L{State} kept durable by an L{IEventLog}, and the
committer that carries out the protocol layer's decisions.

Every change goes through L{Store.commit}: a decision's records are appended
to the event log and applied to memory at once, on the reactor thread and in
call order, so a second request sees the first one's change (two refreshes
of one token cannot both succeed). The decision's audit events go to the
audit sink's durable path at the same moment, so both writes run side by
side; its answer is given only once the records and the events are durable,
so only then may an edge answer. A log that refuses the append at once (it
failed earlier), or an audit sink that cannot write, leaves memory
unchanged: no change is made that the audit trail cannot record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog import CompactionInProgress, JournalFailed, JournalImage, journal_image
from oauthd.interfaces import AuditFailing, IAuditSink, IEventLog
from oauthd.state.decision import AuditEvent, Decision
from oauthd.state.follower import replayed
from oauthd.state.model import State
from oauthd.state.entities import Token
from oauthd.state.records import TokenIssued, encode
from oauthd.state.rotation_records import TokenRotated

if TYPE_CHECKING:
    from oauthd.state.follower import Follower

T = TypeVar("T")


def succeeded(d: Deferred[Any]) -> bool:
    """
    Whether C{d} has fired with a result (not a failure) that is there now.
    """
    return d.called and not d.paused and not isinstance(d.result, (Failure, Deferred))


log = Logger()

SWEEP_INTERVAL = 60
"""
Seconds between sweeps of expired tokens out of memory.
"""

SWEEP_GRACE = 120
"""
Seconds past its expiry a token stays in memory on a node of a shared log:
a record decided before it expired but applied later (a node catching up,
clocks apart) is admitted there counting it, as where it came at once.
"""

SWEEP_SLICE = 1_000
"""
Tokens a sweep looks at per reactor turn (a few milliseconds of work).
"""

COMPACT_SLACK = 10_000
"""
Dead records tolerated beyond the live ones before compaction starts.
"""


class NotDurable(Exception):
    """
    The event log could not make a decision's records durable: it refused
    them at once (memory is unchanged), or its write failed after they were
    applied to memory. Either way it refuses every later append too. Or the
    records are durable but the audit sink could not record their events
    (C{made}): the change was made, and the sink keeps the events until it
    can write them.

    @ivar context: who and what the change was for (the decision's).
    @ivar made: whether the change was made and is durable all the same.
    """

    def __init__(
        self, reason: BaseException, context: dict[str, object], made: bool = False,
    ) -> None:
        super().__init__(f"the change could not be recorded: {reason}")
        self.reason = reason
        self.context = context
        self.made = made


def _answer(result: object, decision: Decision[T], done: Deferred[T]) -> None:
    """
    Give C{decision}'s answer (or its refusal) through C{done}, its records
    durable and C{result} what recording its audit events came to.
    """
    if isinstance(result, Failure):
        assert result.value is not None
        done.errback(NotDurable(result.value, decision.context, made=True))
    elif decision.refusal is not None:
        done.errback(decision.refusal)
    else:
        done.callback(decision.answer)


class Store(Service):
    """
    State plus its log, the committer, and the housekeeping both need.

    @ivar state: the in-memory state; read it freely, change it only through
        L{commit}.
    @ivar log: the event log.
    @ivar observe: shown every audit event as it is recorded, a change's once
        its records are durable (metrics).
    @ivar compacted_at: when the last compaction finished, if one has.
    @ivar compaction_seconds: how long it took.
    """

    observe: Callable[[AuditEvent], None] | None = None
    compacted_at: float | None = None
    compaction_seconds = 0.0

    def __init__(
        self, state: State, log: IEventLog, clock: IReactorTime, audit: IAuditSink,
        sweep_slice: int = SWEEP_SLICE,
    ) -> None:
        self.state = state
        self._sweep_slice = sweep_slice
        self.log = log
        self._clock = clock
        self.audit_sink = audit
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self._compacting = False
        self._compaction_waiters: list[Deferred[None]] = []
        self.journal_failure: str | None = None
        # Set when the log is shared (oauthd.state.follower.follow): memory
        # then changes as the log delivers records, not at commit.
        self.follower: Follower | None = None

    @classmethod
    def load(cls, log: IEventLog, clock: IReactorTime, audit: IAuditSink, sweep_slice: int = SWEEP_SLICE) -> Store:
        """
        Build the state by replaying C{log} (blocking: call it before the
        reactor runs).
        """
        return cls(replayed(log, clock.seconds()), log, clock, audit, sweep_slice)

    def commit(self, decision: Decision[T]) -> Deferred[T]:
        """
        Carry out C{decision}: append its records to the log and, unless the
        log refuses them at once, apply them to memory now and record its
        audit events on the sink's durable path; once both are durable, give
        its answer (or raise its refusal). A decision without records has
        its events recorded in the sink's batches.

        @return: fires with the answer when the records and their audit
            events are durable; fails with L{NotDurable} if the log cannot
            write them or the audit sink cannot record the events (at once,
            with nothing changed, if the sink is failing already; marked
            C{made} if the records are durable and only the events failed);
            fails at once, with nothing changed, with what C{decision.still}
            raised.
        @raise ValueError: at once, with nothing applied, if a record cannot
            be encoded or appended, or issues a token whose client or user
            is absent or disabled (memory would ignore it while the log kept
            it, and a later compaction could bring it to life).
        """
        records = decision.records
        audited: Deferred[None] | None = None
        if decision.still is not None:
            try:
                decision.still()
            except Exception:
                return fail()
        if self.follower is not None and (records or decision.claims):
            return self.follower.commit(self, decision)
        if records:
            payloads = [encode(r) for r in records]
            for record in records:
                if type(record) is TokenRotated:
                    issuing: Token | None = record.access
                else:
                    issuing = record.token if isinstance(record, TokenIssued) else None
                if issuing is not None and not self.state.may_issue(issuing.client_id, issuing.user):
                    raise ValueError("a token for an absent or disabled client or user")
            if self.audit_sink.failure is not None:
                return fail(NotDurable(AuditFailing(self.audit_sink.failure), decision.context))
            # The log checks every payload before it takes any; one that
            # refuses at once (it failed or closed earlier) changes nothing.
            appended = self.log.append(payloads)
            if not (appended.called and isinstance(appended.result, Failure)):
                self.state.apply(records, self._clock.seconds())
                self._maybe_compact()
                audited = self.audit_sink.record_changes(decision.audit)
                if audited is None and decision.refusal is None and succeeded(appended):
                    # Durable and audited already (an in-memory log, an
                    # inline trail): answered without the waiting below.
                    if self.observe is not None:
                        for event in decision.audit:
                            self.observe(event)
                    return succeed(decision.answer)
        else:
            appended = succeed(None)
        recorded = succeed(None) if audited is None else audited
        done: Deferred[T] = Deferred()
        # Bound methods given their arguments rather than closures: one
        # change of many, each made and freed per commit.
        appended.addBoth(self._durable, decision, bool(records), recorded, done)
        return done

    def _durable(self, result: object, decision: Decision[T], changed: bool, recorded: Deferred[None],
                 done: Deferred[T]) -> None:
        """
        The append of C{decision}'s records has ended with C{result}: give
        its answer once its audit events are C{recorded}, or its failure.
        """
        if isinstance(result, Failure):
            assert result.value is not None
            # Consumed here whatever the journal did: an audit failure
            # after a journal failure is the same refusal.
            recorded.addErrback(lambda _: None)
            self._note_failure(result.value)
            done.errback(NotDurable(result.value, decision.context))
            return
        if not changed:
            try:
                for event in decision.audit:
                    self.record_audit(event)
            except Exception:
                _answer(Failure(), decision, done)
                return
        elif self.observe is not None:
            # Shown only now: a change the log never made durable was
            # answered 503, so it did not happen.
            for event in decision.audit:
                self.observe(event)
        recorded.addBoth(_answer, decision, done)

    def _note_failure(self, error: BaseException) -> None:
        if isinstance(error, JournalFailed) and self.journal_failure is None:
            self.journal_failure = (f"{error}; free space or fix the disk, then restart oauthd"
                                    " (the journal does not recover by itself)")
            log.warn("{reason}", reason=self.journal_failure)

    def trouble(self) -> str | None:
        """
        Why the store cannot take changes now (the journal failed, or the
        audit trail cannot write), or C{None}.
        """
        reasons = [r for r in (self.journal_failure, self.audit_sink.failure) if r is not None]
        return "; ".join(reasons) or None

    def journal_figures(self) -> dict[str, int]:
        """
        The event log's size (records and bytes) against the records a
        compacted log would hold, for an admin.
        """
        return {
            "journal_records": self.log.record_count,
            "journal_bytes": self.log.byte_count,
            "live_records": self.state.live_records,
        }

    def record_audit(self, event: AuditEvent) -> None:
        """
        Record an audit event that comes with no change (a refusal, a
        listing), or with a change once it is durable.
        """
        self.audit_sink(event.event, event.outcome, event.fields)
        if self.observe is not None:
            self.observe(event)

    def record_change_audit(self, event: AuditEvent) -> Deferred[None]:
        """
        Record an audit event of a change already committed (the control
        socket describes its changes once they are made).

        @return: fires when the event is durable; fails with L{NotDurable}
            if the audit sink cannot record it (the change is made).
        """
        recorded = self.audit_sink.record_change(event.event, event.outcome, event.fields)
        if self.observe is not None:
            self.observe(event)

        def failed(failure: Failure) -> Failure:
            assert failure.value is not None
            return Failure(NotDurable(failure.value, dict(event.fields), made=True))

        return recorded.addErrback(failed)

    def _maybe_compact(self) -> None:
        records = self.log.record_count
        state = self.state
        if records <= 2 * (len(state.clients) + len(state.users) + state.token_count()) + COMPACT_SLACK:
            # Too few records for compaction however many of the state's
            # other records live, which take longer to count (on every commit).
            return
        dead = records - state.live_records
        if not self._compacting and dead > state.live_records + COMPACT_SLACK:
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
        started = self._clock.seconds()

        def finished(result: object) -> object:
            self._compacting = False
            waiters, self._compaction_waiters = self._compaction_waiters, []
            if isinstance(result, Failure):
                assert result.value is not None
                self._note_failure(result.value)
                log.failure("compaction failed", result)
                for waiter in waiters:
                    waiter.errback(result)
                return result
            self.compacted_at = self._clock.seconds()
            # (The wall clock may have been stepped back meanwhile.)
            self.compaction_seconds = max(0.0, self.compacted_at - started)
            log.info(
                "compacted the journal from {before} to {after} records",
                before=before, after=self.log.record_count,
            )
            for waiter in waiters:
                waiter.callback(None)
            return None

        # On a shared log, what the nodes still hold (see SWEEP_GRACE).
        now = self._clock.seconds() - (SWEEP_GRACE if self.follower is not None else 0)
        return self.log.compact(self.state.snapshot(now)).addBoth(finished)

    def compacted_image(self) -> Deferred[JournalImage]:
        """
        The log's contents just after a compaction (this one, or the one
        running): the live state at that one point, compacted, holding every
        change acknowledged before the call. The compaction runs as usual:
        the snapshot is taken a slice per reactor turn, the writing is the
        journal's thread's.

        @return: fires with the image (its reader must close it); fails as
            the compaction does.
        """
        waiter: Deferred[None] = Deferred()
        self._compaction_waiters.append(waiter)
        if not self._compacting:
            # Its failure reaches the waiter (and the log) from finished().
            self.compact().addErrback(lambda _: None)
        # Taken in the compaction's own callback, before anything else can
        # run: no other compaction can have begun.
        return waiter.addCallback(lambda _: journal_image(self.log))

    def sweep(self) -> int:
        """
        Drop expired tokens from memory, a slice at a time: if more are due
        than one slice holds, the next slice runs on the next reactor turn,
        so a million tokens expiring in the same minute never stall it.
        """
        now = self._clock.seconds() - (SWEEP_GRACE if self.follower is not None else 0)
        dropped, more = self.state.sweep(now, self._sweep_slice)
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
