"""
bcrypt for passwords people choose, run in a bounded pool of its own threads,
never on the reactor thread (one check at cost 12 takes about 0.3 s of CPU).
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import bcrypt
from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from oauthd.interfaces import (
    MAX_PASSWORD_BYTES,
    WORST_RANK,
    HasherBusy,
    IPasswordHasher,
    PasswordTooLong,
)


class _Job:
    """
    One piece of bcrypt work, waiting for a thread.
    """

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...], keys: Sequence[str], rank: int) -> None:
        self.f = f
        self.args = args
        self.keys = keys
        self.rank = rank
        self.done: Deferred[Any] = Deferred()
        self.queued = 0.0


@implementer(IPasswordHasher)
class PasswordHasher:
    """
    Hashes and checks passwords in a thread pool, in an order of its own:
    it hands the pool at most C{workers} jobs at once and keeps the rest
    waiting, best rank first, so a caller that has not failed never waits
    behind a flood of callers that have. Within a rank the newest goes
    first and a full queue makes room by refusing the oldest of the worst
    rank (never one better than the newcomer's): under overload, the
    caller who has waited longest has likely given up, and a burst that
    came before does not hold back everyone after it. No key (an address,
    a username) may hold more than C{share} waiting places among the jobs
    ranked above 0.

    @ivar cost: the bcrypt work factor for new hashes.
    @ivar max_pending: jobs allowed to wait for a thread at once.
    @ivar workers: jobs handed to the pool at once (its threads).
    @ivar share: waiting places one key may hold.
    @ivar dummy_cost: the cost of the hash an empty or overlong one is
        checked against instead (the cost most stored hashes have), so an
        unknown user takes as long as a known one.
    @ivar dummy: that hash, made on the first check that needs it.
    @ivar on_wait: told how long each job waited for a thread (metrics),
        timed by C{timer}.
    """

    on_wait: Callable[[float], None] | None = None
    timer: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(
        self, reactor: IReactorFromThreads, pool: ThreadPool, cost: int = 12,
        max_pending: int = 32, workers: int = 2, dummy_cost: int | None = None,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self.cost = cost
        self.max_pending = max_pending
        self.workers = workers
        self.share = max(1, max_pending // 4)
        self.dummy_cost = cost if dummy_cost is None else dummy_cost
        self.dummy = ""
        self._waiting: list[deque[_Job]] = [deque() for _ in range(WORST_RANK + 1)]
        self._held: Counter[str] = Counter()
        self._running = 0
        self._dispatching = False

    @property
    def pending(self) -> int:
        """
        Jobs waiting or running.
        """
        return self._running + sum(len(waiting) for waiting in self._waiting)

    @property
    def queued(self) -> int:
        """
        Jobs waiting for a thread.
        """
        return sum(len(waiting) for waiting in self._waiting)

    def _run(self, f: Callable[..., Any], *args: Any, keys: Sequence[str] = (), rank: int = 0) -> Deferred[Any]:
        rank = min(max(rank, 0), WORST_RANK)
        keys = keys if rank else ()
        for key in keys:
            while self._held[key] >= self.share:
                if not self._push_out(rank, key):
                    return fail(HasherBusy())
        while sum(len(waiting) for waiting in self._waiting) >= self.max_pending:
            if not self._push_out(rank, None):
                return fail(HasherBusy())
        job = _Job(f, args, keys, rank)
        if self.on_wait is not None:
            job.queued = self.timer()
        self._waiting[rank].append(job)
        self._held.update(keys)
        self._dispatch()
        return job.done

    def _push_out(self, rank: int, key: str | None) -> bool:
        """
        Refuse the oldest waiting job of the worst rank not better than
        C{rank} (holding C{key}, if given); whether there was one.
        """
        for worse in range(WORST_RANK, rank - 1, -1):
            waiting = self._waiting[worse]
            for i in range(len(waiting)):
                job = waiting[i]
                if key is None or key in job.keys:
                    del waiting[i]
                    self._release(job.keys)
                    job.done.errback(Failure(HasherBusy()))
                    return True
        return False

    def _release(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]

    def _dispatch(self) -> None:
        # An inline pool finishes a job inside deferToThreadPool; the loop
        # already running hands out the next one.
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._running < self.workers:
                job = next((w.pop() for w in self._waiting if w), None)
                if job is None:
                    break
                self._release(job.keys)
                self._running += 1
                if self.on_wait is not None:
                    self.on_wait(self.timer() - job.queued)
                d = deferToThreadPool(self._reactor, self._pool, job.f, *job.args)
                d.addBoth(self._finished, job)
        finally:
            self._dispatching = False

    def _finished(self, result: object, job: _Job) -> None:
        self._running -= 1
        if isinstance(result, Failure):
            job.done.errback(result)
        else:
            job.done.callback(result)
        self._dispatch()

    def hash(self, password: str) -> Deferred[str]:
        """
        A new bcrypt hash of C{password}.

        @raise PasswordTooLong: (in the Deferred) over 72 bytes.
        """
        raw = password.encode("utf-8")
        if len(raw) > MAX_PASSWORD_BYTES:
            return fail(PasswordTooLong(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes"))
        return self._run(_hash, raw, self.cost)

    def check(self, password: str, hashed: str, keys: Sequence[str] = (), rank: int = 0) -> Deferred[bool]:
        """
        Whether C{password} matches C{hashed}; C{False} for an overlong
        password or an empty or malformed hash.
        """
        raw = password.encode("utf-8", "surrogatepass")
        if len(raw) <= MAX_PASSWORD_BYTES and hashed:
            return self._run(_check, raw, hashed.encode("ascii"), keys=keys, rank=rank)
        if self.dummy:
            return self._run(_check, raw[:MAX_PASSWORD_BYTES], self.dummy.encode("ascii"),
                             keys=keys, rank=rank).addCallback(lambda _: False)

        def made(dummy: str) -> bool:
            self.dummy = self.dummy or dummy
            return False

        # The first one makes the dummy: hashing takes as long as checking.
        return self._run(_hash, os.urandom(16), self.dummy_cost, keys=keys, rank=rank).addCallback(made)

    def outdated(self, hashed: str) -> bool:
        return hash_cost(hashed) not in (None, self.cost)


def hash_cost(hashed: str) -> int | None:
    """
    The cost a bcrypt hash (C{$2b$12$...}) was made at; C{None} if it is not
    one.
    """
    parts = hashed.split("$")
    if len(parts) != 4 or parts[0] or not parts[2].isdigit():
        return None
    return int(parts[2])


def usual_cost(hashes: Iterable[str], default: int) -> int:
    """
    The cost most of C{hashes} were made at (C{default} if none is a bcrypt
    hash): the one a dummy check should take as long as.
    """
    costs = Counter(cost for cost in map(hash_cost, hashes) if cost is not None)
    return costs.most_common(1)[0][0] if costs else default


def _hash(raw: bytes, cost: int) -> str:
    return bcrypt.hashpw(raw, bcrypt.gensalt(cost)).decode("ascii")


def _check(raw: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(raw, hashed)
    except ValueError:
        return False


class ThreadPoolService(Service):
    """
    Starts and stops a thread pool with the daemon.
    """

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()
