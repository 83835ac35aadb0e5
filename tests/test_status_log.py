"""
C{Status} (C{oauthctl status}) says where the node is in its event log: its
position, and on a shared log its node id and lag; and a digest of its
state at that position, equal on nodes that hold the same state.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from oauthd.control import wire
from oauthd.testing import InlinePool, InlineReactor
from tests.postgres import fresh_database
from tests.test_control import Harness


def test_status_on_the_journal() -> None:
    """
    On a local journal: no node id, no lag; the digest follows the state.
    """
    harness = Harness()
    link = harness.connect()
    before = link.call(wire.Status)
    assert (before["node"], before["position"], before.get("lag")) == ("", 0, None)
    link.call(wire.AddToken, label="t", scope="*", lifetime=60)
    after = link.call(wire.Status)
    assert after["position"] == 1
    assert len(after["state_digest"]) == 64 and after["state_digest"] != before["state_digest"]


def test_status_on_a_shared_log() -> None:
    """
    On a shared log: the node id, position and lag; a node started later
    on the same log holds the same state at the same position, and says
    the same digest.
    """
    from oauthd.eventlog.postgresql import open_postgres_log

    uri = fresh_database()
    clocks: list[Clock] = []

    def node(name: str) -> Any:
        clocks.append(Clock())
        log = open_postgres_log(uri, InlineReactor(), pool=InlinePool(), listen=False, node=name,
                                clock=clocks[-1])
        log.follow(lambda position, payload: None)
        return log

    a = Harness(journal=node("a"))
    link = a.connect()
    link.call(wire.AddToken, label="t", scope="*", lifetime=3600)
    clocks[0].advance(2.5)
    first = link.call(wire.Status)
    assert (first["node"], first["position"], first["lag"]) == ("a", 1, 2.5)
    b = Harness(journal=node("b"))
    second = b.connect().call(wire.Status)
    assert (second["node"], second["position"], second["lag"]) == ("b", 1, 0.0)
    assert second["state_digest"] == first["state_digest"]
