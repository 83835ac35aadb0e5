"""
What a long refresh token family costs, through the protocol layer (the
token endpoint's decisions, committed by the store) over an event log that
keeps nothing, so only the state's own memory is measured. Asserts nothing;
prints:

1. Microseconds per refresh for fresh families (their first rotation)
   against one family after ROTATIONS rotations, measured in alternating
   slices of the same run so the machine's drift hits both alike (the
   median slice of each), and the ratio.
2. Bytes of memory (tracemalloc) the state keeps per rotation, over the
   second half of ROTATIONS rotations of one family, and how many tokens it
   holds at the end: with the clock still, and with the clock moving a
   minute a rotation (access tokens expire and are swept; each token's
   expiry minute then has a sweep bucket of its own).
3. With C{--counts N}: N live access tokens of one client, replayed (as
   after a restart), then the time of the control socket's status and of
   one client row's token count.

    python bench/refresh_family.py [ROTATIONS]     (default 10000)
    python bench/refresh_family.py --counts [N]    (default 1000000)
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PASSWORD = "correct horse battery staple"
SLICES = 25
PER_SLICE = 8  # fresh families per slice, fewer than the client's limit of families per user


class NullLog:
    """
    An event log that keeps nothing and is durable at once.
    """

    record_count = 0
    byte_count = 0
    snapshot_records = None

    def append(self, payloads: Sequence[bytes]) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)

    def replay(self) -> Iterator[bytes]:
        return iter(())

    def compact(self, snapshot: Iterable[bytes]) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)

    def close(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)


def _result(d: Any) -> Any:
    """
    The result of a Deferred that has fired (everything here is inline).
    """
    from twisted.internet.defer import Deferred

    out: list[Any] = []
    if isinstance(d, Deferred):
        d.addBoth(out.append)
        return out[0]
    return d


class Bench:
    def __init__(self) -> None:
        from oauthd.protocol.clientauth import ClientAuth
        from oauthd.testing import MemoryServer

        self.server = MemoryServer.build(log=NullLog())
        for name in ("alice", "bob"):
            _result(self.server.add_user(name, PASSWORD))
        client, secret = _result(self.server.add_client(
            "bench", scope="*", grant_types=("password", "refresh_token")))
        self.auth = ClientAuth(basic=(client.id, secret))

    def request(self, params: dict[str, str]) -> dict[str, Any]:
        from oauthd.protocol import grants

        decision = _result(grants.token(self.server.ctx, params, self.auth, "127.0.0.1"))
        body = _result(self.server.store.commit(decision))
        assert isinstance(body, dict) and "refresh_token" in body, body
        return body

    def login(self, user: str = "alice") -> str:
        body = self.request({"grant_type": "password", "username": user, "password": PASSWORD})
        return str(body["refresh_token"])

    def refresh(self, refresh_token: str) -> str:
        return str(self.request({"grant_type": "refresh_token", "refresh_token": refresh_token})["refresh_token"])


def timing(rotations: int) -> None:
    bench = Bench()
    long_family = bench.login()
    for _ in range(rotations):
        long_family = bench.refresh(long_family)
    fresh_slices: list[float] = []
    long_slices: list[float] = []
    for _ in range(SLICES):
        fresh = [bench.login("bob") for _ in range(PER_SLICE)]
        started = time.perf_counter()
        for token in fresh:
            bench.refresh(token)
        fresh_slices.append((time.perf_counter() - started) / PER_SLICE)
        started = time.perf_counter()
        for _ in range(PER_SLICE):
            long_family = bench.refresh(long_family)
        long_slices.append((time.perf_counter() - started) / PER_SLICE)
    fresh_us, long_us = statistics.median(fresh_slices) * 1e6, statistics.median(long_slices) * 1e6
    print(f"refresh, protocol layer, median of {SLICES} alternating slices of {PER_SLICE}:")
    print(f"  fresh family (first rotation)      {fresh_us:8.1f} us")
    print(f"  family after {rotations:,} rotations {long_us:8.1f} us   ({long_us / fresh_us:.2f}x)")


def memory(rotations: int, step: int) -> None:
    """
    Memory per rotation over the second half of C{rotations}, the clock
    moving C{step} seconds a rotation (and the sweep run every 100).
    """
    bench = Bench()
    clock = bench.server.ctx.clock
    token = bench.login()
    half = rotations // 2

    def rotate(times: int) -> str:
        rotated = token
        for i in range(times):
            clock.advance(step)  # type: ignore[attr-defined]
            rotated = bench.refresh(rotated)
            if step and i % 100 == 0:
                bench.server.store.sweep()
        return rotated

    token = rotate(half)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    token = rotate(rotations - half)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    state = bench.server.state
    clocked = f"the clock moving {step} s a rotation, swept" if step else "the clock still"
    print(f"memory (tracemalloc), rotations {half:,} to {rotations:,} of one family, {clocked}:")
    print(f"  {grown / (rotations - half):8.1f} bytes per rotation ({grown / 1e6:.2f} MB per {rotations - half:,});"
          f" tokens held at the end: {len(state.tokens)}")


def counts(n: int) -> None:
    from oauthd.control.responders import StatusResponders
    from oauthd.control.session import AdminSession
    from oauthd.state.entities import ACCESS, Client, Token
    from oauthd.state.model import replay
    from oauthd.state.records import ClientPut, TokenIssued, encode

    bench = Bench()
    state = bench.server.state
    now = bench.server.ctx.now()
    # As after a restart: replayed, expiring over the next 30 days.
    payloads = [encode(ClientPut(Client(id="cbig", name="big", max_tokens=-1)))]
    payloads += (encode(TokenIssued(Token(key, ACCESS, "cbig", "", "*", now, 3600 + key % (30 * 86400), "", "")))
                 for key in range(1, n + 1))
    replay(state, payloads, now)
    del payloads
    session = AdminSession(bench.server.store, bench.server.ctx, 0, bench.server.ctx.clock, now)
    status = StatusResponders(session)
    print(f"counts, {n:,} live access tokens of one client, replayed:")
    for name, call in (("status", status.status),
                       ("one client's token count", lambda: session.live_tokens(client_id="cbig"))):
        started = time.perf_counter()
        result = call()
        took = time.perf_counter() - started
        shown = result["tokens"] if isinstance(result, dict) else result
        print(f"  {name:26} {took * 1e3:10.3f} ms  ({shown:,} tokens)")


def main() -> None:
    if sys.argv[1:2] == ["--counts"]:
        counts(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
        return
    rotations = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    timing(rotations)
    memory(rotations, 0)
    memory(rotations, 60)


if __name__ == "__main__":
    main()
