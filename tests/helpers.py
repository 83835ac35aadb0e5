"""
Shared test fixtures: the whole server in memory (L{MemoryServer}), with an
injected clock, an in-memory journal and bcrypt run inline at its lowest
cost.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from oauthd.config import Config
from oauthd.interfaces import IEventLog
from oauthd.state.decision import Decision
from oauthd.state.records import Record
from oauthd.testing import START, InlineReactor, MemoryServer, config_for_tests, give_keys_for_tests
from oauthd.web.api import OAuthHTTP

__all__ = ["START", "InlineMemoryReactor", "change", "make_config", "make_http", "make_server"]


class InlineMemoryReactor(MemoryReactorClock, InlineReactor):
    """
    A memory reactor whose callFromThread runs at once, so work handed to an
    inline pool completes synchronously.
    """


make_config = config_for_tests


def make_server(
    config: Config | None = None, clock: Clock | None = None, journal: IEventLog | None = None,
    random_bytes: Any = None, hash_pool: Any = None, signing_keys: bool = True,
) -> MemoryServer:
    """
    A L{MemoryServer} over C{journal} (replayed, so passing the journal of an
    earlier one is a restart), with L{give_keys_for_tests} unless not
    C{signing_keys} (a test that counts what a snapshot holds).
    """
    server = MemoryServer.build(config, clock, journal, random_bytes or os.urandom, hash_pool)
    if signing_keys:
        give_keys_for_tests(server.state, server.ctx.now())
    return server


def make_http(config: Config | None = None) -> OAuthHTTP:
    """
    The HTTP API over a fresh in-memory server (L{make_server}).
    """
    server = make_server(config)
    return OAuthHTTP(server.ctx, server.store)


def change(records: list[Record]) -> Decision[None]:
    """
    A decision that only changes the state (no answer, no audit).
    """
    return Decision(None, records)
