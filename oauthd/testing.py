"""
Fakes of oauthd's seams, shipped beside the real things for tests of the
layers above them (and for other projects' tests).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs
from attrs import Factory, define
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from oauthd.config import Config, build_config
from oauthd.eventlog import MemoryJournal
from oauthd.eventlog.writer_pool import OnResult, run_job
from oauthd.interfaces import Claim, HasherBusy, IAuditSink, IEventLog, IPasswordHasher
from oauthd.protocol import clientauth, lookup, signing
from oauthd.protocol.admin import clients, tokens, users
from oauthd.protocol.context import Context
from oauthd.protocol.login import check_password
from oauthd.protocol.tokens import RandomBytes
from oauthd.services.audit import log_audit
from oauthd.services.hashing import PasswordHasher
from oauthd.state.entities import ACCESS, Client, Token, User
from oauthd.state.keys import KeyAdded, SigningKey
from oauthd.state.model import State
from oauthd.state.store import Store

T = TypeVar("T")

START = 1_800_000_000
"""
A fixed time to start test clocks at (2027-01-15), so timestamps look real.
"""


@implementer(IReactorFromThreads)
class InlineReactor:
    """
    A reactor whose C{callFromThread} calls at once: with an inline or
    stepping pool, every job's result is delivered synchronously.
    """

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)




class InlinePool:
    """
    A thread pool with no threads: each job runs in the caller, at once.
    """

    def callInThreadWithCallback(
        self, onResult: OnResult, f: Callable[..., object], *a: object, **kw: object
    ) -> None:
        run_job(onResult, f, a, kw)


class SteppingPool:
    """
    A thread pool with no threads that runs a job only when the test says
    so, so a test can look at the journal while a write+fsync is "in
    flight".
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[OnResult, Callable[..., object], Any, Any]] = []

    def callInThreadWithCallback(
        self, onResult: OnResult, f: Callable[..., object], *a: object, **kw: object
    ) -> None:
        self.jobs.append((onResult, f, a, kw))

    def run_one(self) -> None:
        """
        Run the oldest queued job and deliver its result.
        """
        run_job(*self.jobs.pop(0))

    def run_all(self, limit: int = 100_000) -> int:
        """
        Run jobs (including ones queued meanwhile) until none is left.

        @return: how many ran.
        """
        ran = 0
        while self.jobs:
            assert ran < limit, "the journal keeps queueing jobs"
            self.run_one()
            ran += 1
        return ran


class HeldJournal(MemoryJournal):
    """
    A memory journal whose appends and compactions, while C{holding}, are
    acknowledged only when the test says so (L{release}, or by firing one
    of L{held}): a slow disk, to show that answers wait for durability.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.holding = False
        self.held: list[Deferred[None]] = []

    def _hold(self, d: Deferred[None]) -> Deferred[None]:
        if not self.holding:
            return d
        held: Deferred[None] = Deferred()
        self.held.append(held)
        return held

    def append(self, payloads: Sequence[bytes], claims: Sequence[Claim] = ()) -> Deferred[None]:
        return self._hold(super().append(payloads, claims))

    def compact(self, snapshot: Iterable[bytes]) -> Deferred[None]:
        return self._hold(super().compact(snapshot))

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)


@implementer(IPasswordHasher)
@define
class ControlledHasher:
    """
    A password hasher that a test steers: it passes work to a real one
    unless told to hold the next check (to act while bcrypt "runs") or to
    be busy; and it counts the checks asked of it.

    @ivar checks: how many checks were asked for.
    @ivar held: the next check's result, fired by the test, if set.
    @ivar busy: refuse every check as an overloaded pool would.
    @ivar ranks: the rank of each check asked for.
    """

    inner: IPasswordHasher
    checks: int = 0
    ranks: list[int] = Factory(list)
    held: Deferred[bool] | None = None
    busy: bool = False

    def hold(self) -> Deferred[bool]:
        """
        Make the next check wait for the returned Deferred.
        """
        self.held = Deferred()
        return self.held

    def hash(self, password: str) -> Deferred[str]:
        return self.inner.hash(password)

    def check(self, password: str, hashed: str, keys: Sequence[str] = (), rank: int = 0) -> Deferred[bool]:
        self.checks += 1
        self.ranks.append(rank)
        if self.busy:
            return fail(HasherBusy())
        if self.held is not None:
            held, self.held = self.held, None
            return held
        return self.inner.check(password, hashed, keys, rank)

    def outdated(self, hashed: str) -> bool:
        return self.inner.outdated(hashed)


def config_for_tests(**values: Any) -> Config:
    """
    A configuration for tests: no data directory, an https issuer.
    """
    values.setdefault("data", "/nonexistent")
    values.setdefault("issuer", "https://auth.example.com")
    return build_config(values, {})


@functools.cache
def keys_for_tests() -> tuple[SigningKey, ...]:
    """
    A signing key per algorithm, made once per process (an RSA key takes a
    while to make) for every L{MemoryServer}: it signs from its start.
    """
    return tuple(signing.generate(alg, 0, 0) for alg in signing.ALGORITHMS)


def give_keys_for_tests(state: State, now: int) -> None:
    """
    Give C{state} L{keys_for_tests}, signing from C{now}, if it has no
    keys; straight into memory, not the log, since tests count the records
    their requests write (the daemon commits its first keys at start).
    """
    if not state.keys.all():
        state.apply([KeyAdded(attrs.evolve(key, created=now, signs_from=now))
                     for key in keys_for_tests()], now)


@define
class MemoryServer:
    """
    The whole server but its edges, in memory: the state over an event log
    (in memory unless one is given), an injected clock, bcrypt inline at its
    lowest cost, and the ways tests and benchmarks set it up and look at it:
    each change is the protocol layer's decision, committed by the store.
    """

    store: Store
    ctx: Context

    @classmethod
    def build(
        cls, config: Config | None = None, clock: IReactorTime | None = None,
        log: IEventLog | None = None, random_bytes: RandomBytes = os.urandom,
        hash_pool: Any = None, audit: IAuditSink = log_audit,
    ) -> MemoryServer:
        """
        A server over C{log}, replayed (so the log of an earlier one makes a
        restart).
        """
        if clock is None:
            clock = Clock()
            clock.advance(START)
        store = Store.load(log if log is not None else MemoryJournal(), clock, audit)
        hasher = PasswordHasher(InlineReactor(), hash_pool or InlinePool(), cost=4)  # type: ignore[arg-type]
        ctx = Context(store.state, config or config_for_tests(), clock, hasher, random_bytes=random_bytes)
        return cls(store, ctx)

    @property
    def state(self) -> State:
        return self.store.state

    def authenticate_token(self, secret: str) -> Token | None:
        return lookup.authenticate_token(self.ctx, secret)

    def find_token(self, reference: str) -> Token | None:
        return lookup.find_token(self.ctx, reference)

    def authenticate_client(self, client_id: str, secret: str) -> Client | None:
        return clientauth.authenticate_client(self.ctx, client_id, secret)

    def check_password(self, name: str, password: str) -> Deferred[User | None]:
        return Deferred.fromCoroutine(check_password(self.ctx, name, password))

    def issue_token(
        self, *, scope: str, lifetime: int, client: Client | None = None, user: str = "",
        label: str = "", kind: str = ACCESS,
    ) -> Deferred[tuple[str, Token]]:
        """
        Issue a token; fires with its secret and itself once durable.
        """
        decision = tokens.issue(self.ctx, scope=self.ctx.scope(scope), lifetime=lifetime,
                                client=client, user=user, label=label, kind=kind)
        return self.store.commit(decision).addCallback(lambda minted: (minted.secret, minted.token))

    def revoke(self, token: Token) -> Deferred[Token]:
        return self.store.commit(tokens.revoke(self.ctx, token))

    def add_client(self, name: str, **fields: Any) -> Deferred[tuple[Client, str]]:
        return self.store.commit(clients.add_client(self.ctx, name, **fields))

    def update_client(self, client_id: str, regenerate_secret: bool = False, **changes: Any) -> Deferred[tuple[Client, str]]:
        return self.store.commit(clients.update_client(self.ctx, client_id, regenerate_secret, **changes))

    def add_user(self, name: str, password: str | None = None, **fields: Any) -> Deferred[User]:
        async def added() -> User:
            return await self.store.commit(await users.add_user(self.ctx, name, password, **fields))

        return Deferred.fromCoroutine(added())

    def update_user(self, name: str, **changes: Any) -> Deferred[User]:
        return self.store.commit(users.update_user(self.ctx, name, **changes))


def seed(directory: str, now: float, build: Callable[[MemoryServer], Any]) -> Any:
    """
    Prepare a data directory offline, before a daemon starts on it: call
    C{build(server)} with a L{MemoryServer} over the directory's own journal
    (written inline, bcrypt at its lowest cost, the clock at C{now}) and
    return what its Deferred or coroutine gives. This is how end-to-end
    tests and benchmarks get clients and users without the control socket.

    @raise RuntimeError: if C{build} does not finish synchronously.
    """
    from twisted.internet.defer import ensureDeferred

    from oauthd.eventlog import FileJournal

    journal = FileJournal.open(directory, InlineReactor(), pool=InlinePool())  # type: ignore[arg-type]
    clock = Clock()
    clock.advance(now)
    server = MemoryServer.build(build_config({"data": directory}, {}), clock, journal)
    results: list[Any] = []
    try:
        outcome = build(server)
        d = outcome if isinstance(outcome, Deferred) else ensureDeferred(outcome)
        d.addBoth(results.append)
    finally:
        journal.close()
    if not results:
        raise RuntimeError("seeding did not finish synchronously")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


__all__ = [
    "START", "ControlledHasher", "HeldJournal", "InlinePool", "InlineReactor", "MemoryServer",
    "SteppingPool", "seed", "config_for_tests",
]
