"""
Hunt races on the durable path: many changes committed through a real
reactor (epoll) with the real L{FileJournal} and L{AuditTrail}, their writer
threads paired as the daemon pairs them, with random delays and injected
write failures in both, and, in some runs, the reactor stopped (as by
SIGTERM) while changes are in flight.

Each run checks: every change is answered once (no hang: a run that does
not settle in time dumps the threads and fails); a success only when
nothing failed before it was made (a failed journal fails it and every
later one); successes in the order the changes were made; every answered
change in the journal and its audit event in a trail that verifies; the
reactor stops cleanly; no file descriptor or thread left behind.

    python bench/durable_stress.py [RUNS] [CHANGES] [SEED]

Prints one line per failed run and a summary; exits 1 if any run failed.
"""

from __future__ import annotations

import faulthandler
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.python.failure import Failure

from oauthd.eventlog import FileJournal
from oauthd.eventlog.errors import JournalFailed
from oauthd.interfaces import AuditFailing
from oauthd.services.audit import GENESIS, AuditTrail, TrailLimits
from oauthd.services.audit_files import verify_trail
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import Client
from oauthd.state.records import ClientPut
from oauthd.state.store import NotDurable, Store


def put(name: str) -> Decision[str]:
    return Decision(f"answer {name}", [ClientPut(Client(id=name, name=name))],
                    [audit("client.add", "ok", client=name)])


class Flaky:
    """
    A sync that sometimes waits a little and, at the calls chosen, fails.
    """

    def __init__(self, rng: random.Random, real: Any, fail_at: set[int]) -> None:
        self.rng = random.Random(rng.random())
        self.real = real
        self.fail_at = fail_at
        self.calls = 0
        self.armed = False

    def __call__(self, fd: int) -> None:
        if not self.armed:
            self.real(fd)
            return
        self.calls += 1
        if self.rng.random() < 0.3:
            time.sleep(self.rng.random() * 0.002)
        if self.calls in self.fail_at:
            raise OSError(5, "Input/output error (injected)")
        self.real(fd)


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def one_run(seed: int, changes: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []
    directory = tempfile.mkdtemp(prefix="oauthd-stress-")
    fds_before = open_fds()
    threads_before = {t.ident for t in threading.enumerate()}
    reactor = EPollReactor()
    own_fds = open_fds() - fds_before
    journal_fails = {rng.randrange(1, changes)} if rng.random() < 0.3 else set()
    trail_fails = {rng.randrange(1, changes) for _ in range(rng.randrange(3))} if rng.random() < 0.3 else set()
    journal_sync = Flaky(rng, os.fsync, journal_fails)
    trail_sync = Flaky(rng, os.fdatasync, trail_fails)
    journal = FileJournal.open(directory, reactor, fsync_function=journal_sync)
    # Small files in some runs: rotations and retention's jobs on the trail's thread.
    limits = TrailLimits(rotate_bytes=rng.choice([2048, 16384, 64 << 20]), keep_bytes=1 << 40)
    trail = AuditTrail(directory, reactor, reactor, sync=trail_sync, partner=journal.writer, limits=limits)
    journal_sync.armed = trail_sync.armed = True
    trail.startService()
    store = Store.load(journal, reactor, trail)
    store.startService()
    outcomes: dict[int, list[object]] = {}
    answered_order: list[int] = []
    made: list[int] = []
    journal_failed_at: list[int] = []  # how many changes had been made when it was seen
    stop_at = rng.randrange(changes) if rng.random() < 0.4 else None
    stopping = [False]
    state = {"next": 0}

    def settled(result: object, n: int) -> None:
        outcomes.setdefault(n, []).append(result)
        if not isinstance(result, Failure):
            answered_order.append(n)
        elif isinstance(result.value, NotDurable) and isinstance(result.value.reason, JournalFailed):
            if not journal_failed_at:
                journal_failed_at.append(state["next"])
        if not stopping[0] and len(outcomes) == changes:
            finish()

    def commit_some() -> None:
        if stopping[0]:
            return
        for _ in range(rng.choice([1, 1, 2, 5, 20])):
            n = state["next"]
            if n >= changes:
                return
            if stop_at is not None and n == stop_at:
                stopping[0] = True
                reactor.stop()
                return
            state["next"] = n + 1
            made.append(n)
            try:
                d = store.commit(put(f"stress-{n:06d}"))
            except Exception:
                outcomes.setdefault(n, []).append(Failure())
                continue
            d.addBoth(settled, n)
        if rng.random() < 0.02:
            # Compaction's long jobs on the journal's thread.
            store.compact().addErrback(lambda _: None)
        if rng.random() < 0.05:
            time.sleep(0.003)  # the reactor busy: results pile up meanwhile
        if rng.random() < 0.1:
            # Quiet until every change has settled: a wake-up lost now is a hang.
            since = time.monotonic()

            def settled_all() -> None:
                if stopping[0]:
                    return
                if len(outcomes) == len(made):
                    commit_some()
                elif time.monotonic() - since > 10:
                    watchdog()
                else:
                    reactor.callLater(0.001, settled_all)

            reactor.callLater(0, settled_all)
            return
        reactor.callLater(rng.choice([0, 0, 0.0002, 0.001]), commit_some)

    trail_first = rng.random() < 0.5

    def close_all() -> Any:
        # Either order: the journal stopped while the trail's thread runs, or the other way.
        if trail_first:
            return trail.stopService().addBoth(lambda _: store.stopService())
        return store.stopService().addBoth(lambda _: trail.stopService())

    def finish() -> None:
        stopping[0] = True
        reactor.stop()

    def watchdog() -> None:
        problems.append(f"hang: {len(outcomes)} of {len(made)} changes settled")
        faulthandler.dump_traceback(sys.stderr)
        reactor.crash()

    reactor.addSystemEventTrigger("before", "shutdown", close_all)
    dog = reactor.callLater(60, watchdog)
    hard = threading.Timer(120, lambda: (faulthandler.dump_traceback(sys.stderr), os._exit(3)))
    hard.daemon = True
    hard.start()
    reactor.callWhenRunning(commit_some)
    reactor.run(installSignalHandlers=False)
    hard.cancel()
    hard.join()
    if dog.active():
        dog.cancel()
    for n, results in outcomes.items():
        if len(results) != 1:
            problems.append(f"change {n} settled {len(results)} times")
        for r in results:
            if isinstance(r, Failure) and not r.check(NotDurable):
                problems.append(f"change {n}: unexpected failure {r.getErrorMessage()!r} ({r.type})")
    if stop_at is None and len(outcomes) != len(made):
        problems.append(f"{len(made) - len(outcomes)} changes never settled")
    if answered_order != sorted(answered_order):
        problems.append(f"answers out of order: {answered_order[:20]}...")
    if journal_failed_at:
        late = [n for n in answered_order if n >= journal_failed_at[0]]
        if late:
            problems.append(f"answered after the journal failed: {late[:5]}")
    if not journal_fails and not trail_fails and stop_at is None:
        if len(answered_order) != changes:
            problems.append(f"only {len(answered_order)} of {changes} answered without any failure")
    # Durable: every answer in the journal and in the trail, which verifies.
    with open(journal.path, "rb") as f:
        journal_text = f.read()
    trail_text = b""
    for name in sorted(os.listdir(directory)):
        if name.startswith("audit"):
            with open(os.path.join(directory, name), "rb") as f:
                trail_text += f.read()
    for n in answered_order:
        needle = f"stress-{n:06d}".encode()
        if needle not in journal_text:
            problems.append(f"answered change {n} not in the journal")
        if needle not in trail_text:
            problems.append(f"answered change {n} has no audit line")
    found = verify_trail(directory, (1, GENESIS), trail.written_seq, trail.written_chain)
    if found.broken is not None:
        problems.append(f"trail does not verify: {found.broken} {found.reason}")
    # Left behind: the reactor's own descriptors are closed here by hand.
    time.sleep(0.05)
    extra_threads = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    if extra_threads:
        problems.append(f"threads left: {extra_threads}")
    reactor.waker.connectionLost(None)  # type: ignore[attr-defined]
    reactor._poller.close()  # type: ignore[attr-defined]
    left = open_fds() - fds_before - own_fds
    if left:
        problems.append(f"descriptors left open: {sorted(left)} "
                        f"{[os.readlink(f'/proc/self/fd/{fd}') for fd in left if os.path.exists(f'/proc/self/fd/{fd}')]}")
    shutil.rmtree(directory, True)
    return [f"seed {seed} (stop_at={stop_at}, journal_fails={journal_fails}, trail_fails={trail_fails}): {p}"
            for p in problems]


def main() -> int:
    # Installed on first use by modules the run imports: its descriptors are not ours.
    from twisted.internet import reactor  # noqa: F401

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    changes = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    base = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
    failed = 0
    start = time.monotonic()
    for i in range(runs):
        problems = one_run(base + i, changes)
        if problems:
            failed += 1
            for p in problems:
                print(p, flush=True)
    print(f"{runs} runs of {changes} changes (seeds {base}..{base + runs - 1}):"
          f" {failed} failed, {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
