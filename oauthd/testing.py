"""
Fakes of oauthd's seams, shipped beside the real things for tests of the
layers above them (and for other projects' tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import define
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from oauthd.eventlog import MemoryJournal
from oauthd.interfaces import HasherBusy, IPasswordHasher

OnResult = Callable[[bool, Any], object]


@implementer(IReactorFromThreads)
class InlineReactor:
    """
    A reactor whose C{callFromThread} calls at once: with an inline or
    stepping pool, every job's result is delivered synchronously.
    """

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)


def _run(onResult: OnResult, f: Callable[..., object], a: Any, kw: Any) -> None:
    try:
        result = f(*a, **kw)
    except BaseException:
        onResult(False, Failure())
    else:
        onResult(True, result)


class InlinePool:
    """
    A thread pool with no threads: each job runs in the caller, at once.
    """

    def callInThreadWithCallback(
        self, onResult: OnResult, f: Callable[..., object], *a: object, **kw: object
    ) -> None:
        _run(onResult, f, a, kw)


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
        _run(*self.jobs.pop(0))

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

    def append(self, payloads: Sequence[bytes]) -> Deferred[None]:
        return self._hold(super().append(payloads))

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
    """

    inner: IPasswordHasher
    checks: int = 0
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

    def check(self, password: str, hashed: str) -> Deferred[bool]:
        self.checks += 1
        if self.busy:
            return fail(HasherBusy())
        if self.held is not None:
            held, self.held = self.held, None
            return held
        return self.inner.check(password, hashed)


__all__ = ["ControlledHasher", "HeldJournal", "InlinePool", "InlineReactor", "SteppingPool"]
