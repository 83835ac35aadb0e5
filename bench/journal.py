"""
Journal benchmark: prints figures, asserts nothing.

    python bench/journal.py [--data DIR] [--seconds 2.5]
    python bench/journal.py --replay-only [--tokens 1000000] [--instructions 50000]

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
    model, in each of five new processes as at a daemon's start (the median
    time), with the journal's bytes, the resident memory per token and the
    peak resident memory over the steady state after replay
    (C{--tokens 0} skips it).
 5. with C{--instructions N}: the instructions per replayed token, counted
    by callgrind over open + replay of N and of 2N token records in a new
    process, the difference over the difference so start-up cancels out.

C{--replay-only} runs only sections 4 and 5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


async def write_token_journal(
    reactor: Any, directory: str, count: int, clients: int = 1000
) -> int:
    """
    Write C{count} real token records to a journal in C{directory}, spread
    over C{clients} clients as the token endpoint would issue them, all live
    at L{NOW}.

    @return: the journal's bytes.
    """
    from oauthd.protocol import tokens
    from oauthd.state.entities import ACCESS, Client, Token
    from oauthd.state.records import ClientPut, TokenIssued, encode

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
                client_ids[i % clients], "", "metrics", NOW, 3600, "", "",
            )))
            for i in range(start, min(count, start + batch))
        ])
    size = journal.byte_count
    await journal.close()
    return size


NOW = 1_800_000_000


@frozen
class ReplayFigures:
    opened: float
    replayed: float
    per_token: float
    peak_ratio: float


def run_replay_child(directory: str, prefix: Sequence[str] = ()) -> ReplayFigures:
    """
    Open and replay the journal in C{directory} in a new process, as at a
    daemon's start: this one's heap is warm with the memory the records were
    built in, which would flatter every figure.
    """
    child = subprocess.run(
        [*prefix, sys.executable, __file__, "--replay-child", directory, str(NOW)],
        check=True, capture_output=True, text=True,
    )
    return ReplayFigures(*(float(x) for x in child.stdout.split()))


async def bench_token_replay(
    reactor: Any, directory: str, count: int, runs: int
) -> tuple[list[ReplayFigures], int]:
    """
    Write C{count} token records, then open and replay them into the real
    state model in C{runs} fresh processes.

    @return: each process's figures, and the journal's bytes.
    """
    size = await write_token_journal(reactor, directory, count)
    return [run_replay_child(directory) for _ in range(runs)], size


def callgrind_instructions(directory: str) -> int:
    """
    The instructions a fresh process runs to open and replay the journal in
    C{directory} (its start-up included), counted by callgrind.
    """
    with tempfile.TemporaryDirectory() as out:
        counts = os.path.join(out, "callgrind.out")
        run_replay_child(directory, ("valgrind", "--tool=callgrind", f"--callgrind-out-file={counts}"))
        with open(counts) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no total")


async def bench_replay_instructions(reactor: Any, base: str, count: int) -> tuple[int, int, float]:
    """
    Instructions per replayed token: open + replay of C{count} and of
    2 * C{count} token records under callgrind, the difference over the
    difference in tokens, so the process's start-up cancels out.
    """
    totals = []
    for n in (count, 2 * count):
        directory = os.path.join(base, f"instructions{n}")
        await write_token_journal(reactor, directory, n)
        totals.append(callgrind_instructions(directory))
    return totals[0], totals[1], (totals[1] - totals[0]) / count


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def replay_child(directory: str, now: float) -> None:
    """
    Open the journal in C{directory} and replay it into the state model as
    the daemon does at start; print the seconds each took, the resident
    bytes per live token, and the peak resident memory over the process's
    life divided by the resident memory once replay is done.
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
    steady = rss_kib()
    per_token = (steady - rss_before) * 1024 / len(state.tokens)
    print(opened - started, replayed - opened, per_token, status_kib("VmHWM") / steady)


async def journal_sections(
    reactor: Any, options: argparse.Namespace, fresh: Callable[[], str]
) -> None:
    modes = [
        ("group commit", {}),
        ("fsync per record", {"group_commit": False}),
        ("no fsync", {"fsync": False}),
    ]
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

    await replay_sections(reactor, options, fresh)


async def replay_sections(
    reactor: Any, options: argparse.Namespace, fresh: Callable[[], str]
) -> None:
    if options.tokens:
        runs, size = await bench_token_replay(
            reactor, fresh(), options.tokens, options.replay_runs
        )
        totals = sorted(r.opened + r.replayed for r in runs)
        median = totals[len(totals) // 2]
        per_token = sorted(r.per_token for r in runs)
        peak = sorted(r.peak_ratio for r in runs)
        print(
            f"\ntoken journal, {options.tokens:,} token records"
            f" ({size / options.tokens:.0f} journal bytes per token), open + replay"
            f" into the state model in {len(runs)} fresh processes:"
            f" median {median:.2f} s (each: {', '.join(f'{t:.2f}' for t in totals)});"
            f" resident memory per live token {per_token[0]:.0f}-{per_token[-1]:.0f} B"
            f" (target <= 250); peak / steady resident memory"
            f" {peak[0]:.2f}-{peak[-1]:.2f}x (target <= 1.5)"
        )

    if options.instructions:
        small, large, per_token_instructions = await bench_replay_instructions(
            reactor, fresh(), options.instructions
        )
        print(
            f"\ninstructions (callgrind), open + replay in a fresh process:"
            f" {options.instructions:,} tokens {small:,},"
            f" {2 * options.instructions:,} tokens {large:,};"
            f" per replayed token {per_token_instructions:,.0f}"
        )


async def main(reactor: Any, options: argparse.Namespace) -> None:
    base = options.data or tempfile.mkdtemp(prefix="oauthd-journal-bench-")
    run = 0

    def fresh() -> str:
        nonlocal run
        run += 1
        return os.path.join(base, f"run{run}")

    print(f"data directory: {base}")
    if options.replay_only:
        await replay_sections(reactor, options, fresh)
    else:
        await journal_sections(reactor, options, fresh)
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
    parser.add_argument(
        "--replay-runs", type=int, default=5,
        help="fresh processes that replay the token journal (the median time is shown)",
    )
    parser.add_argument(
        "--instructions", type=int, default=0, metavar="N",
        help="count open + replay of N and 2N token records under callgrind (0 skips)",
    )
    parser.add_argument(
        "--replay-only", action="store_true",
        help="only the token replay, memory and instruction figures",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replay-child"]:
        replay_child(sys.argv[2], float(sys.argv[3]))
        sys.exit()
    options = parse(sys.argv[1:])
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, options)))
