"""
What a client's token limit adds to the sweep and to revocations: one
client of a high limit issues tokens of a short lifetime at a steady rate,
so that its tokens held (the expired ones not yet swept included) reach its
limit and the limit keeps the expiry times of many of them
(L{oauthd.state.indexes.OwnMark}); the sweep then drops the expired ones a
slice at a time, as the store does. Run with the limit checked before each
issue and without (no mark), the state model alone, no event log. Asserts
nothing; prints the longest sweep slice, all the sweeps' time together, and
the time of the limit checks.

    python bench/own_limit_sweep.py [RATE [LIFETIME [SECONDS [LIMIT]]]]
        (default 1000 tokens a second, 60 s, 180 s, 100000)
"""

from __future__ import annotations

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from oauthd.state.entities import ACCESS, Client, Token  # noqa: E402
from oauthd.state.model import State  # noqa: E402
from oauthd.state.records import ClientPut, TokenIssued, TokenRevoked  # noqa: E402
from oauthd.state.store import SWEEP_INTERVAL, SWEEP_SLICE  # noqa: E402

START = 1_700_000_040


def run(checked: bool, rate: int, lifetime: int, seconds: int, limit: int) -> tuple[float, float, float]:
    """
    The longest sweep slice, the sweeps together and the checks together,
    in milliseconds.
    """
    state = State()
    state.apply([ClientPut(Client(id="c", name="c", max_tokens=limit))], START)
    key = 0
    slices: list[float] = []
    checks = 0.0
    for second in range(seconds):
        now = START + second
        for _ in range(rate):
            key += 1
            if checked:
                began = time.perf_counter()
                oldest = state.own_beyond("c", limit, now)
                checks += time.perf_counter() - began
                state.apply([TokenRevoked(t.key) for t in oldest], now)
            state.apply([TokenIssued(Token(key, ACCESS, "c", "", "*", now, lifetime, "", ""))], now)
        if second % SWEEP_INTERVAL == SWEEP_INTERVAL - 1:
            more = True
            while more:
                began = time.perf_counter()
                _, more = state.sweep(now, SWEEP_SLICE)
                slices.append(time.perf_counter() - began)
    return max(slices) * 1000, sum(slices) * 1000, checks * 1000


def main(argv: list[str]) -> None:
    rate, lifetime, seconds, limit = (list(map(int, argv)) + [1000, 60, 180, 100_000][len(argv):])[:4]
    print(f"{rate} tokens a second of {lifetime} s for {seconds} s, limit {limit}, sweep slices of {SWEEP_SLICE}")
    for checked in (False, True):
        longest, sweeps, checks = run(checked, rate, lifetime, seconds, limit)
        print(f"  {'limit checked' if checked else 'no limit check':15} longest sweep slice {longest:6.1f} ms,"
              f" sweeps {sweeps:7.0f} ms, checks {checks:5.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
