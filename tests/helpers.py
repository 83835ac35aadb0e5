"""
Shared test fixtures: a whole protocol core in memory, with an injected
clock, an in-memory journal and bcrypt run inline at its lowest cost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from oauthd.config import Config, build_config
from oauthd.eventlog import MemoryJournal
from oauthd.protocol.authority import Authority
from oauthd.protocol.context import Context
from oauthd.services.audit import log_audit
from oauthd.services.hashing import PasswordHasher
from oauthd.state.decision import Decision
from oauthd.state.records import Record
from oauthd.state.store import Store
from oauthd.web.api import OAuthHTTP
from oauthd.testing import InlinePool, InlineReactor

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
    random_bytes: Any = None, hash_pool: Any = None,
) -> Authority:
    """
    An L{Authority} over an in-memory journal (replayed, so passing the
    journal of an earlier one is a restart).
    """
    if clock is None:
        clock = Clock()
        clock.advance(START)
    store = Store.load(journal if journal is not None else MemoryJournal(), clock, log_audit)
    hasher = PasswordHasher(InlineReactor(), hash_pool or InlinePool(), cost=4)
    kwargs = {} if random_bytes is None else {"random_bytes": random_bytes}
    ctx = Context(store.state, config or make_config(), clock, hasher, **kwargs)
    return Authority(store, ctx)


def make_http(config: Config | None = None) -> OAuthHTTP:
    """
    The HTTP API over a fresh in-memory server (L{make_authority}).
    """
    authority = make_authority(config)
    return OAuthHTTP(authority.ctx, authority.store)


def change(records: list[Record]) -> Decision[None]:
    """
    A decision that only changes the state (no answer, no audit).
    """
    return Decision(None, records)
