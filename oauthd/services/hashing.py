"""
bcrypt for passwords people choose, run in a bounded pool of its own threads,
never on the reactor thread (one check at cost 12 takes about 0.3 s of CPU).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import bcrypt
from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from oauthd.interfaces import MAX_PASSWORD_BYTES, HasherBusy, IPasswordHasher, PasswordTooLong

T = TypeVar("T")


@implementer(IPasswordHasher)
class PasswordHasher:
    """
    Hashes and checks passwords in a thread pool.

    @ivar cost: the bcrypt work factor for new hashes.
    @ivar max_pending: checks allowed queued or running at once.
    """

    def __init__(
        self, reactor: IReactorFromThreads, pool: ThreadPool, cost: int = 12,
        max_pending: int = 32,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self.cost = cost
        self.max_pending = max_pending
        self.pending = 0

    def _run(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        if self.pending >= self.max_pending:
            return fail(HasherBusy())
        self.pending += 1

        def done(result: T) -> T:
            self.pending -= 1
            return result

        d: Deferred[T] = deferToThreadPool(self._reactor, self._pool, f, *args)
        return d.addBoth(done)

    def hash(self, password: str) -> Deferred[str]:
        """
        A new bcrypt hash of C{password}.

        @raise PasswordTooLong: (in the Deferred) over 72 bytes.
        """
        raw = password.encode("utf-8")
        if len(raw) > MAX_PASSWORD_BYTES:
            return fail(PasswordTooLong(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes"))
        return self._run(_hash, raw, self.cost)

    def check(self, password: str, hashed: str) -> Deferred[bool]:
        """
        Whether C{password} matches C{hashed}; C{False} for an overlong
        password or an empty or malformed hash.
        """
        raw = password.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_PASSWORD_BYTES or not hashed:
            return self._run(_burn, self.cost)
        return self._run(_check, raw, hashed.encode("ascii"))


def _hash(raw: bytes, cost: int) -> str:
    return bcrypt.hashpw(raw, bcrypt.gensalt(cost)).decode("ascii")


def _check(raw: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(raw, hashed)
    except ValueError:
        return False


def _burn(cost: int) -> bool:
    """
    Spend about as long as a real check, so that an unknown user or an
    overlong password cannot be told apart by timing.
    """
    bcrypt.hashpw(b"never a password", bcrypt.gensalt(cost))
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
