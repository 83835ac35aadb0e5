"""
Shared test fixtures: a whole protocol core in memory, with an injected
clock, an in-memory journal and bcrypt run inline at its lowest cost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from oauthd.protocol.authority import Authority
from oauthd.config import Config, build_config
from oauthd.services.hashing import PasswordHasher
from oauthd.eventlog import MemoryJournal
from oauthd.state.store import Store
from tests.journal_doubles import InlinePool, InlineReactor

START = 1_800_000_000
"""
The injected clock's starting time (2027-01-15), so timestamps look real.
"""


class InlineMemoryReactor(MemoryReactorClock, InlineReactor):
    """
    A memory reactor whose callFromThread runs at once, so work handed to an
    inline pool completes synchronously.
    """


def make_config(**values: Any) -> Config:
    values.setdefault("data", "/nonexistent")
    values.setdefault("issuer", "https://auth.example.com")
    return build_config(values, {})


def make_authority(
    config: Config | None = None, clock: Clock | None = None, journal: MemoryJournal | None = None,
    random_bytes: Any = None,
) -> Authority:
    """
    An L{Authority} over an in-memory journal (replayed, so passing the
    journal of an earlier one is a restart).
    """
    if clock is None:
        clock = Clock()
        clock.advance(START)
    store = Store.load(journal if journal is not None else MemoryJournal(), clock)
    hasher = PasswordHasher(InlineReactor(), InlinePool(), cost=4)  # type: ignore[arg-type]
    kwargs = {} if random_bytes is None else {"random_bytes": random_bytes}
    return Authority(store, config or make_config(), hasher, **kwargs)
