"""
What carrying a change's audit events in a shared log costs a node: prints
figures, asserts nothing.

    python bench/cluster_audit.py [--tokens 300]

One simulated node over an in-memory shared log (L{MemorySharedLog}, no
PostgreSQL: only oauthd's own work is counted) issues tokens, each with its
audit event, through the store's follower, its trail written inline (no
fsync): once with the events written by the committer alone (the follower
without an audit relay), once with them carried in the log as an C{audit}
record and written as delivered (as the daemon does). Counted by callgrind
(instructions per token: the difference of two runs, C{--tokens} and four
times as many), and timed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def issue(relayed: bool, count: int) -> float:
    """
    Issue C{count} tokens on one node; seconds per token.
    """
    import attrs
    from twisted.internet.task import Clock

    from oauthd.eventlog import MemorySharedLog
    from oauthd.protocol.admin import tokens
    from oauthd.protocol.context import Context
    from oauthd.services.audit import AuditTrail
    from oauthd.services.hashing import PasswordHasher
    from oauthd.state.audit_relay import AuditRelay
    from oauthd.state.decision import audit
    from oauthd.state.follower import follow, replayed
    from oauthd.state.store import Store
    from oauthd.tap import follow_shared
    from oauthd.testing import InlinePool, InlineReactor, MemoryServer, config_for_tests

    clock = Clock()
    clock.advance(1_800_000_000)
    log = MemorySharedLog().node()
    relay = AuditRelay("node-a") if relayed else None
    state = replayed(log, clock.seconds(), relay)
    trail = AuditTrail(tempfile.mkdtemp(), clock, InlineReactor(), pool=InlinePool(), sync=lambda fd: None)
    trail.startService()
    store = Store(state, log, clock, trail)
    if relay is not None:
        follow_shared(store, relay, trail)
    else:
        follow(store)
    hasher = PasswordHasher(InlineReactor(), InlinePool(), cost=4)  # type: ignore[arg-type]
    ctx = Context(state, config_for_tests(), clock, hasher, random_bytes=os.urandom)
    added = MemoryServer(store, ctx).add_client("bench", scope="metrics", max_tokens=-1)
    log.step()
    client, _ = added.result
    started = time.perf_counter()
    for _ in range(count):
        decision = tokens.issue(ctx, scope=ctx.scope("metrics"), lifetime=3600, client=client)
        event = audit("token.issue", "ok", client=client.id, token="sess" + os.urandom(8).hex(), ip="127.0.0.1")
        store.commit(attrs.evolve(decision, audit=(event,)))
        log.step()
    return (time.perf_counter() - started) / count


def instructions(relayed: bool, count: int, work: Path) -> int:
    out = work / f"callgrind-{relayed}-{count}.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--child", str(int(relayed)), str(count)], check=True, capture_output=True)
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    assert match is not None
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        issue(args.child[0] == "1", int(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as work:
        for relayed in (False, True):
            small = instructions(relayed, args.tokens, Path(work))
            big = instructions(relayed, 4 * args.tokens, Path(work))
            seconds = min(issue(relayed, 4 * args.tokens) for _ in range(3))
            label = "audit record in the log" if relayed else "events by the committer"
            print(f"{label:24}: {(big - small) / (3 * args.tokens):,.0f} instructions per token,"
                  f" {seconds * 1e6:.0f} us per token")


if __name__ == "__main__":
    main()
