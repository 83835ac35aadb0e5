"""
Hunt races in the writer pools' delivery (L{oauthd.eventlog.writer_pool}):
a real reactor (epoll), two paired pools and an unpaired one, jobs of random
length (some none at all, some raising) given from the reactor in bursts,
pools stopped and started again at random (their pipe closed with the last
thread and opened again), the reactor kept busy now and then.

Checks: every job's result comes once, each pool's in the order given; no
hang; no descriptor left open at the end.

    python bench/writer_pool_stress.py [ROUNDS] [JOBS]

Prints a line per failed round and a summary; exits 1 if any failed.
"""

from __future__ import annotations

import faulthandler
import os
import random
import sys
import time
from typing import Any

from twisted.internet.epollreactor import EPollReactor

from oauthd.eventlog.writer_pool import WriterPool


def job(rng_value: float, n: int) -> int:
    if rng_value < 0.05:
        raise ValueError(n)
    if rng_value < 0.3:
        time.sleep(rng_value / 1000)
    return n


def one_round(seed: int, jobs: int) -> list[str]:
    rng = random.Random(seed)
    reactor = EPollReactor()
    fds = {int(fd) for fd in os.listdir("/proc/self/fd")}
    problems: list[str] = []
    journal = WriterPool(reactor, "stress-journal")
    audit = WriterPool(reactor, "stress-audit", partner=journal)
    other = WriterPool(reactor, "stress-other")
    pools = [journal, audit, other]
    for pool in pools:
        pool.start()
    got: dict[int, list[int]] = {i: [] for i in range(3)}
    given: dict[int, list[int]] = {i: [] for i in range(3)}
    state = {"n": 0}

    def result(which: int, succeeded: bool, value: Any) -> None:
        got[which].append(value if succeeded else value.value.args[0])
        if sum(map(len, got.values())) == jobs and state["n"] >= jobs:
            reactor.stop()

    def give() -> None:
        for _ in range(rng.choice([1, 2, 3, 10])):
            if state["n"] >= jobs:
                return
            n = state["n"]
            state["n"] += 1
            which = rng.randrange(3)
            pool = pools[which]
            if rng.random() < 0.02:
                # Stopped and started again: its jobs so far run first.
                pool.stop()
                pool.start()
            elif rng.random() < 0.01:
                # All of them: the pipe goes with the last thread, maybe
                # holding a wake-up, and a new one comes with the first.
                for each in pools:
                    each.stop()
                for each in pools:
                    each.start()
            given[which].append(n)
            if rng.random() < 0.5:
                pool.run_then(lambda s, v, which=which: result(which, s, v), job, rng.random(), n)
            else:
                pool.run(job, rng.random(), n).addBoth(
                    lambda v, which=which: result(which, not hasattr(v, "value"), v))
        if rng.random() < 0.05:
            time.sleep(0.002)
        if rng.random() < 0.2:
            # Quiet until every result has come: a wake-up lost now is a hang.
            waited_since = time.monotonic()

            def drained() -> None:
                if sum(map(len, got.values())) == state["n"]:
                    give()
                elif time.monotonic() - waited_since > 5:
                    hang()
                else:
                    reactor.callLater(0.001, drained)

            reactor.callLater(0, drained)
            return
        reactor.callLater(rng.choice([0, 0, 0.0001]), give)

    def hang() -> None:
        problems.append(f"hang: {sum(map(len, got.values()))} of {state['n']} results")
        faulthandler.dump_traceback(sys.stderr)
        reactor.crash()

    dog = reactor.callLater(60, hang)
    reactor.callWhenRunning(give)
    reactor.run(installSignalHandlers=False)
    if dog.active():
        dog.cancel()
    for pool in pools:
        pool.stop()
    for which in range(3):
        if got[which] != given[which]:
            problems.append(f"pool {which}: got {len(got[which])} results of {len(given[which])},"
                            f" in order: {got[which] == sorted(got[which])}")
    reactor.waker.connectionLost(None)  # type: ignore[attr-defined]
    reactor._poller.close()  # type: ignore[attr-defined]
    left = {int(fd) for fd in os.listdir("/proc/self/fd")} - fds
    if left:
        problems.append(f"descriptors left: {sorted(left)}")
    return [f"seed {seed}: {p}" for p in problems]


def main() -> int:
    from twisted.internet import reactor  # noqa: F401  (its descriptors are not ours)

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    base = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
    failed = 0
    start = time.monotonic()
    for i in range(rounds):
        problems = one_round(base + i, jobs)
        failed += bool(problems)
        for p in problems:
            print(p, flush=True)
    print(f"{rounds} rounds of {jobs} jobs (seeds {base}..{base + rounds - 1}): {failed} failed,"
          f" {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
