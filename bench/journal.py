"""
Journal benchmark: prints figures, asserts nothing.

    python bench/journal.py [--data DIR] [--seconds 2.5]

Sections:

 1. appends/s with group commit, with an fsync per record and with no fsync,
    at 1 and at 64 concurrent writers (a writer appends one ~120-byte record
    and waits for its Deferred before the next), with the worst reactor
    stall seen meanwhile; then the group-commit / fsync-per-record ratio at
    64 writers.
 2. compaction of a large snapshot while 64 writers keep appending: how
    long it takes, the appends/s meanwhile and the worst reactor stall.
 3. replay: open + replay time and resident memory for N records.
    L{bench_replay} takes the number of records and, optionally, how to
    build a payload and how to apply one, so the state layer can plug in its
    real encoder and model later (C{--replay-records 0} skips it).
 4. the same for a million real token records replayed into the state
    model, in a new process as at a daemon's start, with the journal's bytes
    and the resident memory per token (C{--tokens 0} skips it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attrs import frozen

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from oauthd.eventlog import FileJournal

PAYLOAD = b"x" * 120


@frozen
class Figures:
    appends_per_second: float
    worst_stall_ms: float
    fsyncs: int


class StallMeter:
    """
    Ticks every 5 ms on the reactor and records the worst lateness.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.worst = 0.0
        self.last = time.perf_counter()
        self.call = task.LoopingCall(self.tick)
        self.call.clock = reactor

    def tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last - 0.005)
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.call.start(0.005, now=False)

    def stop(self) -> float:
        self.call.stop()
        return self.worst * 1000


class CountingFsync:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fd: int) -> None:
        self.count += 1
        os.fsync(fd)


async def run_writers(
    reactor: Any, journal: FileJournal, writers: int, seconds: float
) -> float:
    """
    Run C{writers} append loops for C{seconds}; return appends/s.
    """
    stop = False
    done = 0

    async def writer() -> None:
        nonlocal done
        while not stop:
            await journal.append([PAYLOAD])
            done += 1

    started = time.perf_counter()
    loops = [Deferred.fromCoroutine(writer()) for _ in range(writers)]
    await task.deferLater(reactor, seconds, lambda: None)
    stop = True
    rate = done / (time.perf_counter() - started)
    await gatherResults(loops)
    return rate


async def bench_appends(
    reactor: Any, directory: str, writers: int, seconds: float, **options: Any
) -> Figures:
    fsync = CountingFsync()
    journal = FileJournal.open(directory, reactor, fsync_function=fsync, **options)
    meter = StallMeter(reactor)
    meter.start()
    try:
        rate = await run_writers(reactor, journal, writers, seconds)
    finally:
        stall = meter.stop()
        await journal.close()
    return Figures(rate, stall, fsync.count)


async def bench_compaction(
    reactor: Any, directory: str, records: int, writers: int
) -> tuple[float, float, float, float]:
    """
    Compact to a snapshot of C{records} records while C{writers} append.

    @return: seconds the compaction took, appends/s meanwhile, worst
        reactor stall in ms, worst append latency in ms.
    """
    journal = FileJournal.open(directory, reactor)
    stop = False
    done = 0
    measuring = False
    worst_latency = 0.0

    async def writer() -> None:
        nonlocal done, worst_latency
        while not stop:
            sent = time.perf_counter()
            await journal.append([PAYLOAD])
            if measuring:
                worst_latency = max(worst_latency, time.perf_counter() - sent)
            done += 1

    loops = [Deferred.fromCoroutine(writer()) for _ in range(writers)]
    await task.deferLater(reactor, 0.2, lambda: None)
    measuring = True
    meter = StallMeter(reactor)
    meter.start()
    started = time.perf_counter()
    before = done
    await journal.compact(b"%d " % i + PAYLOAD for i in range(records))
    took = time.perf_counter() - started
    rate = (done - before) / took
    stall = meter.stop()
    stop = True
    await gatherResults(loops)
    await journal.close()
    return took, rate, stall, worst_latency * 1000


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


async def bench_replay(
    reactor: Any,
    directory: str,
    records: int,
    make_payload: Callable[[int], bytes] = lambda i: b"%d " % i + PAYLOAD,
    apply: Callable[[bytes], object] = lambda payload: None,
) -> tuple[float, float, int, int]:
    """
    Write C{records} records (no fsync), then time a fresh open + replay,
    feeding each payload to C{apply} (the state model's, once it exists).

    @return: seconds to open, seconds to replay (and apply), file size in
        bytes, and the growth of resident memory over open + replay in KiB.
    """
    journal = FileJournal.open(directory, reactor, fsync=False)
    batch = 10_000
    for start in range(0, records, batch):
        await journal.append([make_payload(i) for i in range(start, min(records, start + batch))])
    size = journal.byte_count
    await journal.close()

    rss_before = rss_kib()
    started = time.perf_counter()
    journal = FileJournal.open(directory, reactor)
    opened = time.perf_counter()
    for payload in journal.replay():
        apply(payload)
    replayed = time.perf_counter()
    rss_growth = rss_kib() - rss_before
    await journal.close()
    return opened - started, replayed - opened, size, rss_growth


async def bench_token_replay(
    reactor: Any, directory: str, count: int, clients: int = 1000
) -> tuple[float, float, int, float]:
    """
    Write C{count} real token records (spread over C{clients} clients, as the
    token endpoint would), then time an open and a replay into the real
    state model in a new process, as a daemon's start does, and measure what
    the live tokens cost in memory there.

    @return: seconds to open (verify), seconds to replay into L{State}, the
        journal's bytes, and resident bytes per live token.
    """
    from oauthd.protocol import tokens
    from oauthd.state.entities import ACCESS, Client, Token
    from oauthd.state.records import ClientPut, TokenIssued, encode

    now = 1_800_000_000
    client_ids = [f"c{i:015d}" for i in range(clients)]
    journal = FileJournal.open(directory, reactor, fsync=False)
    await journal.append([
        encode(ClientPut(Client(id=c, name="bench", max_tokens=-1)))
        for c in client_ids
    ])
    batch = 10_000
    for start in range(0, count, batch):
        await journal.append([
            encode(TokenIssued(Token(
                tokens.token_key(os.urandom(24).hex()), ACCESS,
                client_ids[i % clients], "", "metrics", now, 3600, "", "",
            )))
            for i in range(start, min(count, start + batch))
        ])
    size = journal.byte_count
    await journal.close()
    # In a new process, as at a daemon's start: this one's heap is warm with
    # the memory the records above were built in, which would flatter both
    # figures.
    child = subprocess.run(
        [sys.executable, __file__, "--replay-child", directory, str(now)],
        check=True, capture_output=True, text=True,
    )
    opened, replayed, per_token = (float(x) for x in child.stdout.split())
    return opened, replayed, size, per_token


def replay_child(directory: str, now: float) -> None:
    """
    Open the journal in C{directory} and replay it into the state model as
    the daemon does at start; print the seconds each took and the resident
    bytes per live token.
    """
    from twisted.internet import reactor

    from oauthd.state import model
    from oauthd.tap import collector_paused

    rss_before = rss_kib()
    started = time.perf_counter()
    journal = FileJournal.open(directory, reactor)
    opened = time.perf_counter()
    state = model.State()
    with collector_paused():
        model.replay(state, journal.replay(), now)
    replayed = time.perf_counter()
    per_token = (rss_kib() - rss_before) * 1024 / len(state.tokens)
    print(opened - started, replayed - opened, per_token)


async def main(reactor: Any, options: argparse.Namespace) -> None:
    base = options.data or tempfile.mkdtemp(prefix="oauthd-journal-bench-")
    run = 0

    def fresh() -> str:
        nonlocal run
        run += 1
        return os.path.join(base, f"run{run}")

    modes = [
        ("group commit", {}),
        ("fsync per record", {"group_commit": False}),
        ("no fsync", {"fsync": False}),
    ]
    print(f"data directory: {base}")
    print(f"{options.seconds:.1f} s per run, {len(PAYLOAD)}-byte records\n")
    print(f"{'mode':<18} {'writers':>7} {'appends/s':>11} {'fsyncs':>8} {'worst stall':>12}")
    results: dict[tuple[str, int], Figures] = {}
    for writers in (1, 64):
        for name, extra in modes:
            figures = await bench_appends(
                reactor, fresh(), writers, options.seconds, **extra
            )
            results[(name, writers)] = figures
            print(
                f"{name:<18} {writers:>7} {figures.appends_per_second:>11,.0f}"
                f" {figures.fsyncs:>8} {figures.worst_stall_ms:>9.1f} ms",
                flush=True,
            )
    ratio = (
        results[("group commit", 64)].appends_per_second
        / results[("fsync per record", 64)].appends_per_second
    )
    print(f"\ngroup commit / fsync per record at 64 writers: {ratio:.1f}x")

    if options.compaction_records:
        took, rate, stall, latency = await bench_compaction(
            reactor, fresh(), options.compaction_records, 64
        )
        print(
            f"\ncompaction to {options.compaction_records:,} records with 64"
            f" writers appending: {took:.2f} s, {rate:,.0f} appends/s"
            f" meanwhile, worst append latency {latency:.1f} ms,"
            f" worst reactor stall {stall:.1f} ms"
        )

    if options.replay_records:
        open_s, replay_s, size, rss = await bench_replay(
            reactor, fresh(), options.replay_records
        )
        print(
            f"\nreplay of {options.replay_records:,} records"
            f" ({size / 1e6:.1f} MB): open (verify) {open_s:.2f} s,"
            f" replay {replay_s:.2f} s, resident memory +{rss:,} KiB"
            " (opaque payloads, no state model)"
        )

    if options.tokens:
        open_s, replay_s, size, per_token = await bench_token_replay(
            reactor, fresh(), options.tokens
        )
        print(
            f"\ntoken journal, {options.tokens:,} token records: open (verify)"
            f" {open_s:.2f} s + replay into the state model {replay_s:.2f} s"
            f" = {open_s + replay_s:.2f} s (target <= 5 s);"
            f" {size / options.tokens:.0f} journal bytes per token;"
            f" {per_token:.0f} bytes of resident memory per live token (target <= 300)"
        )

    if not options.data:
        shutil.rmtree(base, ignore_errors=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        help="directory for the journals (default: a temporary one, removed after)",
    )
    parser.add_argument("--seconds", type=float, default=2.5, help="length of each appends run")
    parser.add_argument("--compaction-records", type=int, default=200_000)
    parser.add_argument("--replay-records", type=int, default=200_000)
    parser.add_argument(
        "--tokens", type=int, default=1_000_000,
        help="token records for the state-model replay and memory figures (0 skips)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replay-child"]:
        replay_child(sys.argv[2], float(sys.argv[3]))
        sys.exit()
    options = parse(sys.argv[1:])
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, options)))
