"""
The store over a shared event log (several daemons, one PostgreSQL log):
memory changes only as the log delivers records, at their log position,
this node's own included, so every node applies the same records in the
same order and converges on the same state.

A record is checked when it is applied, against the state at its position
(L{admitted}): one whose preconditions no longer hold there (its client
removed, its user disabled) is dropped, on every node alike. The node that
wrote it learns that as everyone does, by applying it: its committer then
commits the decision's C{lost} alternative, or refuses the change as not
made. A client's own token that finds the client's token limit reached
there evicts the oldest (L{_room_for}).

A decision's claims go with its append: the log decides single use for
every node at once (L{oauthd.interfaces.Claim}); a conflict appends nothing.

A log kept by one process (the file journal) does not use this module: its
store applies a decision at once, on the reactor thread, which is exact for
one writer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, TypeVar, cast

from attrs import define, field

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.eventlog import LogUnavailable
from oauthd.interfaces import Claim, ClaimConflict, Expect, IEventLog
from oauthd.state.admission import apply_at
from oauthd.state.audit_relay import AUDIT_PREFIX, AuditRelay
from oauthd.state.authz_records import CodeRedeemed
from oauthd.state.decision import Decision
from oauthd.state.device import REDEEMED, DevicePut
from oauthd.state.entities import REFRESH, key_hex
from oauthd.state.model import State, replay
from oauthd.state.records import (
    GrantRevoked, RecoveryCodeUsed, RefreshUsed, Record, TokenIssued, TokenUses, TotpStepUsed, encode,
)
from oauthd.state.rotation_records import TokenRotated

if TYPE_CHECKING:
    from oauthd.state.store import Store

T = TypeVar("T")

log = Logger()

SYNC_BOUND = 2.0
"""
Seconds a lookup that missed waits for the log to catch up before it is
answered from memory as it is.
"""

MISSES_PER_SECOND = 20
"""
How many lookup misses of one caller (a client, else an address) may wait
for the log each second, in bursts of as many (the others are answered from
memory at once).
"""

_MISS_CALLERS = 10_000

TOTP_STEP = 30
REVOKED = "revoked"
"""
What a revoked grant's claim holds: no refresh token of it rotates again.
"""


class Superseded(Exception):
    """
    The change was not made: the shared log refused its claims, or the
    state at its position in the log voided one of its records.
    """


def kept_shared(state: State, payloads: Iterable[bytes], snapshot_records: int, now: float,
                relay: AuditRelay | None = None) -> Iterator[bytes]:
    """
    Build a starting node's state as the running nodes built theirs: the
    snapshot's records as they are, then each later record only where it is
    admitted at its position, so what the followers dropped (a raced token
    limit) is dropped here too, and from a journal copied back
    (L{oauthd.state.migration}).  Yields the payloads kept, and the
    revocations applied with them (which the log does not hold).  C{relay}
    is shown each record after the snapshot, numbered from 1.
    """
    records = iter(payloads)
    # Nothing expired (0): later records' admission counts what nodes held then.
    snapshot = list(islice(records, snapshot_records))
    replay(state, snapshot, 0.0)
    yield from snapshot
    made_room: list[Record] = []
    for number, payload in enumerate(records, start=1):
        taken = apply_at(state, payload, now, made_room)
        if taken is None:
            log.error("start: skipped a malformed record ({number} after the snapshot)", number=number)
        elif taken and not payload.startswith(AUDIT_PREFIX):
            if made_room:
                yield from map(encode, made_room)
                made_room.clear()
            yield payload
        if relay is not None:
            relay.applied(number, payload, taken)


def replayed(log: IEventLog, now: float, relay: AuditRelay | None = None) -> State:
    """
    The state C{log} holds, replayed at start (blocking): as written, or,
    for a shared log, as the running nodes hold it (L{kept_shared}; C{relay}
    holds its audit events).

    @raise ValueError: naming the record, if one is malformed (a log one
        process writes).
    """
    state = State()
    if log.snapshot_records is None:
        replay(state, log.replay(), now)
    else:
        deque(kept_shared(state, log.replay(), log.snapshot_records, now, relay), maxlen=0)
        if relay is not None:
            relay.replayed(log.position)
    return state


def new_client_claim(client_id: str) -> Claim:
    """
    The claim of a new client's id: two nodes cannot both create it.
    """
    return Claim("client:" + client_id, "created")


def held_grant_claims(state: State) -> list[Claim]:
    """
    The claims C{state}'s live grants hold: each its current refresh
    token's digest, as L{implied_claims} would have set it on a shared log
    (what a journal copied into one must claim, or a grant's first rotation
    there would be taken for a reuse).
    """
    current: dict[str, Claim] = {}
    for key in state.tokens:
        token = state.tokens[key]
        if token.kind == REFRESH and token.grant and state.families.get(token.grant) is not None:
            current[token.grant] = Claim("grant:" + token.grant, key_hex(token.key), Expect.ABSENT,
                                         token.expires_at or None)
    return list(current.values())


def implied_claims(state: State, records: Sequence[Record]) -> list[Claim]:
    """
    The claims C{records} make on a shared log, whoever decided them: a
    grant's refresh token rotates only from the one it holds now (a
    compare-and-set on the digests, a L{TokenRotated}'s as its parts'), a
    revoked grant holds L{REVOKED} whatever it held, and a code, a device
    code, a TOTP step, a recovery code or a use of an initial access token
    is used once.
    """
    used = {r.key for r in records if isinstance(r, RefreshUsed)}
    claims: list[Claim] = []
    for record in records:
        match record:
            case TokenIssued(token=token) if token.kind == REFRESH and token.grant:
                before = next((key for key in used
                               if (spent := state.tokens.get(key)) is not None
                               and spent.grant == token.grant), None)
                expect: str | Expect = Expect.ABSENT if before is None else key_hex(before)
                claims.append(Claim("grant:" + token.grant, key_hex(token.key), expect,
                                    token.expires_at or None))
            case TokenRotated(used=key, refresh=token):
                spent = state.tokens.get(key)
                expect = key_hex(key) if spent is not None and spent.grant == token.grant else Expect.ABSENT
                claims.append(Claim("grant:" + token.grant, key_hex(token.key), expect,
                                    token.expires_at or None))
            case GrantRevoked(grant=grant):
                family = state.families.get(grant)
                claims.append(Claim("grant:" + grant, REVOKED, Expect.ANY,
                                    (family.expires_at or None) if family is not None else None))
            case CodeRedeemed(key=key):
                code = state.authz.codes.get(key)
                claims.append(Claim("code:" + key, "used", Expect.ABSENT,
                                    code.issued_at + code.lifetime if code is not None else None))
            case DevicePut(code=code) if code.status == REDEEMED:
                claims.append(Claim("device:" + code.key, REDEEMED, Expect.ABSENT,
                                    code.issued_at + code.lifetime))
            case TotpStepUsed(user=user, step=step):
                claims.append(Claim(f"totp:{user}:{step}", "used", Expect.ABSENT,
                                    (step + 4) * TOTP_STEP))
            case RecoveryCodeUsed(user=user, digest=digest):
                claims.append(Claim(f"recovery:{user}:{digest}", "used"))
            case TokenUses(key=key, remaining=remaining) if key in state.tokens:
                # Each use of a limited initial access token once: the one
                # that leaves C{remaining}.
                claims.append(Claim(f"uses:{key_hex(key)}:{remaining}", "used", Expect.ABSENT,
                                    state.tokens[key].expires_at or None))
    return claims


@define(eq=False)
class _Pending:
    """
    One append of this node's, waiting to be delivered: how many of its
    records are still to come, and how many were dropped.
    """

    payloads: list[bytes]
    left: int
    dropped: int = 0
    audited: Deferred[None] | None = None  # its audit events' write, once delivered


@define(eq=False)
class Follower:
    """
    Applies what the log delivers to the state, and commits decisions over
    a shared log (L{commit}).
    """

    state: State
    clock: IReactorTime
    catch_up: CatchUp | None = None
    relay: AuditRelay | None = None  # carries the audit events in the log
    # Appends of this node's that the log refused for a claim (read by the metrics).
    conflicts: int = 0
    _mine: dict[bytes, deque[_Pending]] = field(factory=dict)

    def deliver(self, position: int, payload: bytes) -> None:
        """
        Apply the record at C{position} if it is admitted there (the log's
        follower: see L{oauthd.interfaces.IEventLog.follow}).
        """
        taken = apply_at(self.state, payload, self.clock.seconds())
        if taken is None:
            # Every node skips it alike.
            log.error("log position {position}: skipped a malformed record", position=position)
            return
        audited = None if self.relay is None else self.relay.applied(position, payload, taken)
        waiting = self._mine.get(payload)
        if waiting:
            pending = waiting.popleft()
            if not waiting:
                del self._mine[payload]
            pending.left -= 1
            if audited is not None:
                pending.audited = audited
            if not taken:
                pending.dropped += 1
        elif audited is not None:  # another node's: the trail reports a failed write
            audited.addErrback(lambda _: None)

    def _expect(self, payloads: list[bytes]) -> _Pending:
        pending = _Pending(payloads, len(payloads))
        for payload in payloads:
            self._mine.setdefault(payload, deque()).append(pending)
        return pending

    def _forget(self, pending: _Pending) -> None:
        for payload in pending.payloads:
            waiting = self._mine.get(payload)
            if waiting is not None and pending in waiting:
                waiting.remove(pending)
                if not waiting:
                    del self._mine[payload]

    def commit(self, store: Store, decision: Decision[T]) -> Deferred[T]:
        """
        L{Store.commit} over a shared log: append the decision's records
        with its claims; once the log has delivered them back here, each
        applied or dropped at its position, record its audit events and
        give its answer, or commit its C{lost} alternative (or refuse with
        L{Superseded}) if the claims did not hold or a record was dropped.
        """
        from oauthd.state.store import NotDurable

        if store.audit_sink.failure is not None:
            from oauthd.interfaces import AuditFailing
            return fail(NotDurable(AuditFailing(store.audit_sink.failure), decision.context))
        payloads = [encode(r) for r in decision.records]
        if self.relay is not None and decision.audit:
            payloads.append(self.relay.payload(decision.audit, len(payloads), self.clock.seconds()))
        pending = self._expect(payloads)
        claims = [*decision.claims, *implied_claims(self.state, decision.records)]
        try:
            appended = store.log.append(payloads, claims)
        except Exception:
            # Refused at once (a payload over the log's cap): nothing sent.
            self._forget(pending)
            raise

        def answer(_: object) -> T:
            if decision.refusal is not None:
                raise decision.refusal
            return decision.answer

        def unrecorded(failure: Failure) -> Failure:
            assert failure.value is not None
            return Failure(NotDurable(failure.value, decision.context, made=True))

        def settled(result: object) -> object:
            if isinstance(result, Failure) and result.check(LogUnavailable) and self.catch_up is not None:
                # The connection broke: the append may have been committed
                # all the same, and the log tells by delivering it here.
                return self.catch_up().addCallback(
                    lambda _: outcome(result if pending.left else None))
            return outcome(result)

        def outcome(result: object) -> object:
            self._forget(pending)
            reason: BaseException
            audited = pending.audited
            if isinstance(result, Failure):
                assert result.value is not None
                if not result.check(ClaimConflict):
                    store._note_failure(result.value)
                    return Failure(NotDurable(result.value, decision.context))
                self.conflicts += 1
                reason = result.value
            elif pending.left or pending.dropped:
                # Delivered short: a record voided at its position (or the
                # log acknowledged without delivering, which a shared log
                # with a follower does not do).
                reason = Superseded(f"{pending.dropped} of {len(payloads)} records were voided"
                                    " by changes before them in the log")
            else:
                if store.observe is not None:
                    for event in decision.audit:
                        store.observe(event)
                if audited is None and self.relay is None:
                    audited = store.audit_sink.record_changes(decision.audit)
                return (audited or succeed(None)).addCallbacks(answer, unrecorded)
            if audited is not None:  # written as superseded (L{AuditRelay})
                audited.addErrback(lambda _: None)
            if decision.lost is not None:
                return store.commit(decision.lost())
            return Failure(NotDurable(Superseded(str(reason)), decision.context))

        return cast(Deferred[T], appended.addBoth(settled))


def follow(store: Store, relay: AuditRelay | None = None) -> Follower:
    """
    Make C{store} a node of a shared log: from now on its state changes as
    its log delivers records, and its commits go through the follower (their
    audit events through C{relay}).  Call it once the state is replayed.
    """
    follower = Follower(store.state, store._clock, CatchUp(store.log, store._clock), relay)
    store.follower = follower
    store.log.follow(follower.deliver)
    return follower


@define(eq=False)
class CatchUp:
    """
    A lookup that missed waits here, for the log to deliver what other
    nodes committed before it asked, at most C{bound} seconds.  Waits are
    coalesced: one C{sync()} runs at a time, and everyone who arrives while
    it runs shares the next one.
    """

    log: IEventLog
    clock: IReactorTime
    bound: float = SYNC_BOUND
    _running: list[Deferred[None]] | None = None
    _next: list[Deferred[None]] = field(factory=list)

    def __call__(self) -> Deferred[None]:
        """
        Fires once the log has delivered what was committed before the
        call, or after C{bound} seconds, or when the log fails: never fails.
        """
        waiter: Deferred[None] = Deferred()
        timeout: IDelayedCall = self.clock.callLater(self.bound, self._fire, waiter)

        def fired(result: None) -> None:
            if timeout.active():
                timeout.cancel()
            return result

        waiter.addCallback(fired)
        if self._running is None:
            self._start([waiter])
        else:
            self._next.append(waiter)
        return waiter

    def _start(self, waiters: list[Deferred[None]]) -> None:
        self._running = waiters
        self.log.sync().addErrback(lambda _: None).addCallback(self._done)

    def _done(self, _: object) -> None:
        waiters, self._running = self._running or [], None
        for waiter in waiters:
            self._fire(waiter)
        if self._next:
            waiters, self._next = self._next, []
            self._start(waiters)

    @staticmethod
    def _fire(waiter: Deferred[None]) -> None:
        if not waiter.called:
            waiter.callback(None)


@define(eq=False)
class MissGate:
    """
    Which lookup misses may wait for the log: a budget per caller of
    C{rate} a second (a token bucket), so a caller sending random tokens
    keeps few requests waiting; the waits share the log's round trips
    (L{CatchUp}) whoever asks.
    """

    clock: IReactorTime
    rate: float = MISSES_PER_SECOND
    _budget: dict[str, tuple[float, float]] = field(factory=dict)

    def admit(self, caller: str) -> bool:
        now = self.clock.seconds()
        left, then = self._budget.get(caller, (self.rate, now))
        left = min(self.rate, left + (now - then) * self.rate)
        if left < 1:
            self._budget[caller] = (left, now)
            return False
        if len(self._budget) >= _MISS_CALLERS:
            self._budget.clear()
        self._budget[caller] = (left - 1, now)
        return True


def caught_up(store: Store) -> Deferred[None]:
    """
    Fires once a lookup that missed may be answered from memory: at once
    for a store that is not following a shared log.
    """
    follower = store.follower
    if follower is None or follower.catch_up is None:
        return succeed(None)
    return follower.catch_up()
