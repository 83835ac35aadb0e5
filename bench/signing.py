"""
What signing a token costs the reactor, per algorithm: signing an ID-token
sized set of claims with oauthd.protocol.signing (joserfc), and verifying
it, with the server's keys in memory.

    python bench/signing.py [COUNT]   (default 2000)

Prints the mean and the 99th percentile per operation; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oauthd.protocol import key_rotation, signing  # noqa: E402
from oauthd.testing import MemoryServer  # noqa: E402


def timed(count: int, work: object) -> tuple[float, float]:
    assert callable(work)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    times.sort()
    return sum(times) / count, times[int(count * 0.99)]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = MemoryServer.build()
    ctx = server.ctx
    server.store.commit(key_rotation.first_keys(ctx))
    now = ctx.now()
    claims = {
        "iss": "https://photos.example.com/auth", "sub": "u" + "0" * 15, "aud": "c" + "1" * 15,
        "exp": now + 3600, "iat": now, "auth_time": now, "nonce": "n" * 32, "at_hash": "h" * 22,
        "amr": ["pwd", "otp"], "sid": "s" * 22,
    }
    print(f"{count} tokens per algorithm, times in milliseconds")
    print(f"{'alg':6} {'sign mean':>10} {'sign p99':>10} {'verify mean':>12} {'verify p99':>11}")
    for alg in signing.ALGORITHMS:
        token = signing.sign(ctx, claims, alg)
        sign_mean, sign_p99 = timed(count, lambda: signing.sign(ctx, claims, alg))
        verify_mean, verify_p99 = timed(count, lambda: signing.verify(ctx, token))
        print(f"{alg:6} {sign_mean * 1e3:10.3f} {sign_p99 * 1e3:10.3f} "
              f"{verify_mean * 1e3:12.3f} {verify_p99 * 1e3:11.3f}")
    started = time.perf_counter()
    for alg in signing.ALGORITHMS:
        signing.generate(alg, now, now)
    print(f"making one key of each algorithm: {(time.perf_counter() - started) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
