"""
PostgreSQL event log benchmark: prints figures, asserts nothing.

    python bench/eventlog_postgres.py [--uri postgresql://...] [--seconds 3]

Without C{--uri} it starts a throwaway cluster as the tests do
(L{tests.postgres}: UNIX socket, fsync=off, synchronous_commit=on), so the
figures measure oauthd's path and PostgreSQL's CPU, not a disk.

 1. appends/s through L{PostgresLog} at 1, 8 and 64 concurrent writers (a
    writer appends one ~120-byte record and waits for it before the next),
    without a follower (acknowledged at commit) and with one (acknowledged
    once read back from the log), with the ack latency p50/p99;
 2. the same appends with a claim each (a compare-and-set per append);
 3. follow latency: node a's 64 writers append, node b (another log, its
    own connections, woken by NOTIFY) follows; from a's append call to b's
    delivery, p50/p99;
 4. reading back the log from the start (records/s), as a start does.
"""

from __future__ import annotations

import argparse
import itertools
import struct
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from oauthd.eventlog.postgresql import open_postgres_log
from oauthd.interfaces import Claim

PAYLOAD = b"x" * 120
KEYS = itertools.count()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


async def run_writers(log: Any, reactor: Any, writers: int, seconds: float, claims: bool) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    async def writer(w: int) -> None:
        while time.perf_counter() < stop:
            claim = [Claim(f"bench:{next(KEYS)}", "used")] if claims else []
            began = time.perf_counter()
            await log.append([PAYLOAD], claim)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await gatherResults([Deferred.fromCoroutine(writer(w)) for w in range(writers)])
    return len(latencies) / (time.perf_counter() - began), latencies


async def follow_latency(reactor: Any, uri: str, seconds: float) -> None:
    a = open_postgres_log(uri, reactor, node="bench-a")
    b = open_postgres_log(uri, reactor, node="bench-b")
    list(a.replay())
    list(b.replay())
    latencies: list[float] = []

    def delivered(position: int, payload: bytes) -> None:
        if payload.startswith(b"t"):
            latencies.append(time.perf_counter() - struct.unpack(">d", payload[1:9])[0])

    b.follow(delivered)
    stop = time.perf_counter() + seconds

    async def writer() -> None:
        while time.perf_counter() < stop:
            await a.append([b"t" + struct.pack(">d", time.perf_counter()) + PAYLOAD])

    await gatherResults([Deferred.fromCoroutine(writer()) for _ in range(64)])
    await b.sync()
    await gatherResults([a.close(), b.close()])
    print(f"follow latency, another node, 64 writers: {len(latencies)} records,"
          f" p50 {percentile(latencies, 0.5) * 1000:.2f} ms, p99 {percentile(latencies, 0.99) * 1000:.2f} ms")


async def main(reactor: Any, uri: str, seconds: float) -> None:
    print(f"{'writers':>8} {'follower':>9} {'claims':>7} {'appends/s':>10} {'p50 ms':>7} {'p99 ms':>7}")
    for follower in (False, True):
        for claims in (False, True):
            for writers in (1, 8, 64):
                log = open_postgres_log(uri, reactor, node=f"bench-{follower}-{claims}-{writers}")
                list(log.replay())
                if follower:
                    log.follow(lambda position, payload: None)
                rate, latencies = await run_writers(log, reactor, writers, seconds, claims)
                await log.close()
                print(f"{writers:>8} {str(follower):>9} {str(claims):>7} {rate:>10.0f}"
                      f" {percentile(latencies, 0.5) * 1000:>7.2f} {percentile(latencies, 0.99) * 1000:>7.2f}")
    await follow_latency(reactor, uri, seconds)
    began = time.perf_counter()
    log = open_postgres_log(uri, reactor, node="bench-replay", listen=False)
    count = sum(1 for _ in log.replay())
    elapsed = time.perf_counter() - began
    await log.close()
    print(f"start: read {count} records in {elapsed:.2f} s ({count / elapsed:.0f} records/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", help="an empty database (default: a throwaway cluster)")
    parser.add_argument("--seconds", type=float, default=3.0)
    options = parser.parse_args()
    uri = options.uri
    if uri is None:
        from tests.postgres import fresh_database

        uri = fresh_database()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, uri, options.seconds)))
