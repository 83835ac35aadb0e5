"""
Test doubles for the journal's writer thread: a reactor whose
C{callFromThread} runs at once, a pool that runs jobs inline, a pool the test
steps by hand, and an fsync that records what it saw (or fails).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from oauthd.eventlog import TEMP_NAME, FileJournal

OnResult = Callable[[bool, Any], object]


@implementer(IReactorFromThreads)
class InlineReactor:
    """
    A reactor whose C{callFromThread} calls at once: with an inline or
    stepping pool, every job's result is delivered synchronously.
    """

    def callFromThread(self, f: Callable[..., object], *a: object, **kw: object) -> None:
        f(*a, **kw)


def _run(onResult: OnResult, f: Callable[..., object], a: Any, kw: Any) -> None:
    try:
        result = f(*a, **kw)
    except BaseException:
        onResult(False, Failure())
    else:
        onResult(True, result)


class InlinePool:
    """
    A thread pool with no threads: each job runs in the caller, at once.
    """

    def callInThreadWithCallback(
        self, onResult: OnResult, f: Callable[..., object], *a: object, **kw: object
    ) -> None:
        _run(onResult, f, a, kw)


class SteppingPool:
    """
    A thread pool with no threads that runs a job only when the test says so,
    so a test can look at the journal while a write+fsync is "in flight".
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[OnResult, Callable[..., object], Any, Any]] = []

    def callInThreadWithCallback(
        self, onResult: OnResult, f: Callable[..., object], *a: object, **kw: object
    ) -> None:
        self.jobs.append((onResult, f, a, kw))

    def run_one(self) -> None:
        """
        Run the oldest queued job and deliver its result.
        """
        _run(*self.jobs.pop(0))

    def run_all(self, limit: int = 100_000) -> int:
        """
        Run jobs (including ones queued meanwhile) until none is left.

        @return: how many ran.
        """
        ran = 0
        while self.jobs:
            assert ran < limit, "the journal keeps queueing jobs"
            self.run_one()
            ran += 1
        return ran


def fd_target(fd: int) -> str:
    """
    The path a descriptor refers to (Linux).
    """
    return os.readlink(f"/proc/self/fd/{fd}")


class RecordingFsync:
    """
    An fsync that records the target and size of every descriptor it syncs,
    runs an optional hook first, and can be told to fail.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_when: Callable[[str], bool] = lambda target: False
        self.before: Callable[[str], None] = lambda target: None

    def __call__(self, fd: int) -> None:
        target = fd_target(fd)
        self.before(target)
        self.calls.append((target, os.fstat(fd).st_size))
        if self.fail_when(target):
            raise OSError(5, "Input/output error (injected)")
        os.fsync(fd)

    def journal_syncs(self) -> list[int]:
        """
        The sizes seen by the fsyncs of journal files (not the directory or
        a compaction's temporary file).
        """
        return [size for target, size in self.calls if target.endswith("journal.oauthd")]


def make_directory(cleanup: Callable[..., object]) -> str:
    """
    A fresh temporary directory, removed by C{cleanup}.
    """
    directory = tempfile.mkdtemp(prefix="oauthd-journal-test-")
    cleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "data")


def open_inline(directory: str, **kwargs: Any) -> FileJournal:
    """
    Open a L{FileJournal} whose writer runs inline.
    """
    kwargs.setdefault("pool", InlinePool())
    return FileJournal.open(directory, InlineReactor(), **kwargs)


def read_journal(directory: str) -> list[bytes]:
    """
    Open, replay and close the journal in C{directory}, with no threads.
    """
    journal = open_inline(directory)
    try:
        return list(journal.replay())
    finally:
        journal.close()


def temp_exists(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, TEMP_NAME))
