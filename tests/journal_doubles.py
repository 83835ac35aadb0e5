"""
Helpers for the journal's tests: an fsync that records what it saw (or
fails), temporary data directories, and journals opened with their writer
inline (the fakes of the writer's thread are in L{oauthd.testing}).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from oauthd.eventlog import TEMP_NAME, FileJournal
from oauthd.testing import InlinePool, InlineReactor

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
