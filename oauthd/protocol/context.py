"""
What every decision of the protocol layer reads: the state, the
configuration, and the injected sources of time, randomness, password checks
and rate limits. Nothing here does I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from oauthd.config import Config
from oauthd.interfaces import IPasswordHasher
from oauthd.protocol import scopes
from oauthd.protocol.limits import RateLimiter
from oauthd.protocol.tokens import RandomBytes
from oauthd.state.entities import User
from oauthd.state.model import State

Body = dict[str, object]
"""
A JSON answer.
"""

Params = Mapping[str, str]
"""
A request's parameters, parsed by the edge.
"""


def has_second_factor(state: State, user: User) -> bool:
    """
    Whether C{user} has turned on two-factor authentication (TOTP,
    L{oauthd.protocol.second_factor}). Such a user may log in at the token
    endpoint and C{/api/v1/session} only with an app password (PhotoPrism's
    rule), and a browser login asks for the code.
    """
    return user.name in state.second_factors


def _inline(work: Callable[[], Any]) -> Deferred[Any]:
    return maybeDeferred(work)


@define
class Context:
    """
    The protocol layer's view of the world.

    @ivar state: read freely; changed only by committing decisions.
    @ivar clock: the injected time source.
    @ivar hasher: checks and hashes passwords people choose, off the reactor.
    @ivar limiter: the failure rate limits.
    @ivar random_bytes: the source of every secret.
    @ivar second_factor: whether a user must give a second factor
        (L{has_second_factor} unless a test injects its own).
    @ivar off_reactor: runs slow, self-contained work (making an RSA key)
        where it does not hold up the reactor: a thread in the daemon,
        inline (already fired) unless one is injected.
    """

    state: State
    config: Config
    clock: IReactorTime
    hasher: IPasswordHasher
    limiter: RateLimiter = field()
    random_bytes: RandomBytes = os.urandom
    second_factor: Callable[[User], bool] = field()
    off_reactor: Callable[[Callable[[], Any]], Deferred[Any]] = field(default=_inline)

    @limiter.default
    def _limiter(self) -> RateLimiter:
        limiter = RateLimiter(self.now)
        limiter.configure(self.config)
        return limiter

    @second_factor.default
    def _second_factor(self) -> Callable[[User], bool]:
        return lambda user: has_second_factor(self.state, user)

    def reconfigure(self, config: Config) -> None:
        """
        Run with C{config} from now on (a reload): every decision reads the
        configuration here when it is made, and the limiter counts by its
        limits.
        """
        self.config = config
        self.limiter.configure(config)

    def now(self) -> int:
        """
        The current time in whole seconds on the injected clock.
        """
        return int(self.clock.seconds())

    def scope(self, requested: str) -> str:
        """
        C{requested} in canonical form.

        @raise scopes.ScopeError: if it names an unknown scope.
        """
        return scopes.normalize(requested, self.config.scopes)
