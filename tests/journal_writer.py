"""
The writer process of the journal crash test.

It opens a journal with the real reactor and a real writer thread, checks
that what it replays is the gap-free sequence 0..n-1, then appends record
n, n+1, ... from several concurrent writers (each waits for its append
before the next) and writes each sequence number to its output file as soon
as that append's Deferred fires.  With C{compact}, it also compacts the
journal over and over (snapshot: every acknowledged record), so that a kill
usually lands in the middle of a compaction.  It runs until killed.

Output file lines: C{ready <n>}, then acknowledged sequence numbers, with
C{compacting <records>} / C{compacted} markers, or C{error <text>}.

Usage::

    python tests/journal_writer.py run DIR OUT [compact] [writers] [seed]
    python tests/journal_writer.py serve

C{serve} imports everything once, then for each C{run DIR OUT COMPACT
WRITERS SEED} line on stdin forks a writer (which installs its own reactor;
nothing reactor- or thread-related exists before the fork) and answers
C{pid <pid>}; C{wait <pid>} reaps it and answers C{status <status>}.  This
saves the half second of interpreter and Twisted start-up per trial, so the
test can afford many trials.
"""

from __future__ import annotations

import os
import random
import sys
from typing import NoReturn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def payload(seq: int) -> bytes:
    """
    Record C{seq}: its number, then padding of a size that varies by record
    (the same every time, so a snapshot can rebuild it).
    """
    return b"%d:" % seq + b"." * ((seq * 7919) % 400)


def sequence_number(record: bytes) -> int:
    return int(record.split(b":", 1)[0])


def run(directory: str, out: str, compact: bool, writers: int, seed: int) -> NoReturn:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from oauthd.eventlog import FileJournal

    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

    def say(line: bytes) -> None:
        os.write(fd, line + b"\n")

    def fatal(failure: Failure) -> None:
        say(b"error " + failure.getErrorMessage().encode("utf-8", "replace"))
        os._exit(4)

    rng = random.Random(seed)
    journal = FileJournal.open(directory, reactor)
    acknowledged = [sequence_number(p) for p in journal.replay()]
    if acknowledged != list(range(len(acknowledged))):
        say(b"error replayed records are not the sequence 0..n-1")
        os._exit(3)
    say(b"ready %d" % len(acknowledged))
    counter = [len(acknowledged)]

    async def writer() -> None:
        while True:
            seq = counter[0]
            counter[0] += 1
            await journal.append([payload(seq)])
            acknowledged.append(seq)
            say(b"%d" % seq)

    def compact_once() -> None:
        n = len(acknowledged)
        say(b"compacting %d" % n)
        d = journal.compact(payload(acknowledged[i]) for i in range(n))
        d.addCallback(lambda _: say(b"compacted"))
        d.addCallback(lambda _: reactor.callLater(rng.uniform(0, 0.01), compact_once))
        d.addErrback(fatal)

    for _ in range(writers):
        Deferred.fromCoroutine(writer()).addErrback(fatal)
    if compact:
        reactor.callLater(rng.uniform(0, 0.02), compact_once)
    reactor.run()
    os._exit(0)


def serve() -> None:
    # Import what a writer needs, including the reactor's modules, but
    # install no reactor and start no thread.
    import twisted.internet.default  # noqa: F401
    import twisted.internet.defer  # noqa: F401
    import twisted.internet.epollreactor  # noqa: F401
    import twisted.internet.threads  # noqa: F401
    import twisted.python.threadpool  # noqa: F401

    import oauthd.eventlog  # noqa: F401

    assert "twisted.internet.reactor" not in sys.modules
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            directory, out, compact, writers, seed = args
            pid = os.fork()
            if pid == 0:
                try:
                    null = os.open(os.devnull, os.O_RDWR)
                    os.dup2(null, 0)
                    os.dup2(null, 1)
                    run(directory, out, compact == "1", int(writers), int(seed))
                finally:
                    os._exit(1)
            print("pid", pid, flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print("status", status, flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"]:
        serve()
    elif argv[:1] == ["run"] and len(argv) >= 3:
        compact = len(argv) > 3 and argv[3] in ("1", "compact")
        writers = int(argv[4]) if len(argv) > 4 else 16
        seed = int(argv[5]) if len(argv) > 5 else 0
        run(argv[1], argv[2], compact, writers, seed)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
