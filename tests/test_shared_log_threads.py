"""
The PostgreSQL log with the real reactor and its real threads: nodes wake
each other with NOTIFY after their commits (pytest-twisted).
"""

from __future__ import annotations

import pytest_twisted

from twisted.internet.defer import Deferred, gatherResults

from tests.postgres import fresh_database


def the_reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred
async def test_nodes_wake_each_other() -> None:
    """
    Node a appends 200 records, many at once, on its own threads; both
    followers get them all, in one order; b, which appends nothing, is
    woken only by a's NOTIFYs (its listener's poll is an hour).
    """
    from oauthd.eventlog.postgresql import open_postgres_log

    uri = fresh_database()
    reactor = the_reactor()
    nodes = [open_postgres_log(uri, reactor, node=name, poll=3600.0) for name in ("a", "b")]
    seen: list[list[tuple[int, bytes]]] = [[], []]
    all_seen: list[Deferred[None]] = [Deferred(), Deferred()]

    def follower(i: int):  # type: ignore[no-untyped-def]
        def deliver(position: int, payload: bytes) -> None:
            seen[i].append((position, payload))
            if len(seen[i]) == 200:
                all_seen[i].callback(None)
        return deliver

    for i, node in enumerate(nodes):
        node.follow(follower(i))
    try:
        await gatherResults([nodes[0].append([b"a %d" % n]) for n in range(200)])
        await gatherResults([d.addTimeout(60, reactor) for d in all_seen])
        assert seen[0] == seen[1]
        assert [p for p, _ in seen[0]] == list(range(1, 201))
        assert [payload for _, payload in seen[0]] == [b"a %d" % n for n in range(200)]
        await gatherResults([node.sync() for node in nodes])
    finally:
        await gatherResults([node.close() for node in nodes])
