"""
Fakes of oauthd's seams, shipped beside the real things for tests of the
layers above them (and for other projects' tests).
"""

from __future__ import annotations

from attrs import define, field
from zope.interface import implementer

from twisted.internet.defer import Deferred, fail

from oauthd.interfaces import HasherBusy, IPasswordHasher


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


__all__ = ["ControlledHasher"]
