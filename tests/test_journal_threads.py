"""
The file journal with the real reactor and a real writer thread: the few
tests that check the threading itself (pytest-twisted).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest_twisted

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater

from oauthd.eventlog import HEADER_SIZE, RECORD_OVERHEAD, FileJournal
from tests.journal_doubles import fd_target, read_journal


def the_reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred
async def test_concurrent_appends_grouped(tmp_path: Path) -> None:
    """
    64 concurrent writers, each appending a record and waiting for it before
    the next, all complete on a real writer thread, in call order on disk,
    with far fewer fsyncs than records.
    """
    reactor = the_reactor()
    syncs = []

    def counting_fsync(fd: int) -> None:
        syncs.append(fd)
        os.fsync(fd)

    directory = str(tmp_path / "data")
    journal = FileJournal.open(directory, reactor, fsync_function=counting_fsync)
    order: list[bytes] = []

    async def writer(n: int) -> None:
        for i in range(10):
            payload = b"writer %d record %d" % (n, i)
            order.append(payload)
            await journal.append([payload])

    await gatherResults([Deferred.fromCoroutine(writer(n)) for n in range(64)])
    assert journal.record_count == 640
    await journal.close()
    assert read_journal(directory) == order
    assert len(syncs) < 640 / 4, f"{len(syncs)} fsyncs for 640 records"


@pytest_twisted.ensureDeferred
async def test_appends_wait_for_running_fsync(tmp_path: Path) -> None:
    """
    With the writer thread held inside an fsync, three new appends do not
    fire; released, they all go into one further fsync.
    """
    reactor = the_reactor()
    entered: Deferred[None] = Deferred()
    release = threading.Event()
    sizes: list[int] = []

    def held_fsync(fd: int) -> None:
        if not fd_target(fd).endswith("journal.oauthd"):
            os.fsync(fd)
            return
        sizes.append(os.fstat(fd).st_size)
        if len(sizes) == 1:
            reactor.callFromThread(entered.callback, None)
            assert release.wait(10)
        os.fsync(fd)

    directory = str(tmp_path / "data")
    journal = FileJournal.open(directory, reactor, fsync_function=held_fsync)
    first = journal.append([b"first"])
    await entered
    later = [journal.append([b"later %d" % i]) for i in range(3)]
    await deferLater(reactor, 0.05, lambda: None)
    assert not first.called
    assert not any(d.called for d in later)
    release.set()
    await DeferredList([first, *later], fireOnOneErrback=True)
    first_size = HEADER_SIZE + RECORD_OVERHEAD + len(b"first")
    assert sizes == [first_size, first_size + 3 * (RECORD_OVERHEAD + len(b"later 0"))]
    await journal.close()


@pytest_twisted.ensureDeferred
async def test_compaction_with_concurrent_appends(tmp_path: Path) -> None:
    """
    A compaction of a large snapshot on the real writer thread, with writers
    appending throughout, leaves the snapshot followed by every append in
    order; the appends are acknowledged while it runs.
    """
    reactor = the_reactor()
    directory = str(tmp_path / "data")
    journal = FileJournal.open(directory, reactor)
    for i in range(100):
        await journal.append([b"old %d" % i])

    def snapshot() -> Iterator[bytes]:
        for i in range(50_000):
            yield b"live %d" % i

    order: list[bytes] = []
    acknowledged_during: list[bool] = []
    compacted = journal.compact(snapshot())

    async def writer(n: int) -> None:
        for i in range(20):
            payload = b"writer %d record %d" % (n, i)
            order.append(payload)
            await journal.append([payload])
            acknowledged_during.append(not compacted.called)

    await gatherResults(
        [Deferred.fromCoroutine(writer(n)) for n in range(8)] + [compacted]
    )
    assert any(acknowledged_during)
    await journal.close()
    replayed = read_journal(directory)
    assert replayed[:50_000] == [b"live %d" % i for i in range(50_000)]
    assert replayed[50_000:] == order
