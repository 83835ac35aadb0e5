# -*- test-case-name: tests.test_backup -*-
"""
A journal's image: the bytes of a journal file that holds the log's durable
contents at one moment, for a backup. A daemon opens a file of those bytes
as it opens its own journal.

A L{FileJournal}'s image is its file's durable prefix, read through a
descriptor opened at that moment: appends after it only lengthen the file,
and a later compaction renames a new file over the name, leaving the one
read intact until its descriptor closes.
"""

from __future__ import annotations

import os
import stat
from typing import Protocol

from attrs import define

from oauthd.eventlog.files import UnsafeFile, open_to_read
from oauthd.eventlog.format import JOURNAL_NAME, encode_new_journal
from oauthd.eventlog.journal import FileJournal
from oauthd.eventlog.memory import MemoryJournal
from oauthd.interfaces import IEventLog

__all__ = ["FileImage", "JournalImage", "data_files", "journal_image"]


class JournalImage(Protocol):
    """
    The bytes of a journal file, C{size} of them.
    """

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """
        Up to C{length} bytes from C{offset} (fewer only at the end).
        Blocking: call it off the reactor.
        """

    def close(self) -> None:
        """
        Release what the image holds; reading it is then an error.
        """


@define
class FileImage:
    """
    The first C{size} bytes of the file open as C{fd}, which the image owns.
    """

    fd: int
    size: int

    def read(self, offset: int, length: int) -> bytes:
        wanted = max(0, min(length, self.size - offset))
        parts: list[bytes] = []
        while wanted:
            part = os.pread(self.fd, wanted, offset)
            if not part:
                raise OSError(f"the journal file ended {wanted} bytes early")
            parts.append(part)
            offset += len(part)
            wanted -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@define
class _BytesImage:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def close(self) -> None:
        self.data = b""


def journal_image(log: IEventLog) -> JournalImage:
    """
    The image of C{log}'s durable contents now. Call it on the reactor
    thread while no compaction runs (a compaction's new file and its size
    change together only when it is renamed into place).

    @raise TypeError: for a log that is neither a file nor in memory.
    """
    if isinstance(log, FileJournal):
        fd = os.open(log.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        return FileImage(fd, log.byte_count)
    if isinstance(log, MemoryJournal):
        return _BytesImage(b"".join(encode_new_journal([log.payloads])))
    raise TypeError(f"no image of a {type(log).__name__}")


def data_files(directory: str, attempts: int = 5) -> dict[str, FileImage]:
    """
    Every regular file of the data directory C{directory} but the journal's
    own (whose names begin with C{journal.oauthd}: the journal, its lock,
    its temporary and side files), each opened and with its size now: the
    audit trail's files, and any other the daemon keeps there. Blocking:
    call it off the reactor.

    A file removed meanwhile (an audit file retention dropped) is left out.
    If the names changed while they were opened (a rotation renamed the
    active audit file), it looks again, so no file is missed.

    @raise OSError: the directory cannot be read, or kept changing.
    """
    for _ in range(attempts):
        names = _names(directory)
        images: dict[str, FileImage] = {}
        try:
            for name in names:
                path = os.path.join(directory, name)
                try:
                    fd = open_to_read(path)
                except (FileNotFoundError, UnsafeFile):
                    continue
                images[name] = FileImage(fd, os.fstat(fd).st_size)
            if _names(directory) == names:
                return images
        except BaseException:
            _close_all(images)
            raise
        _close_all(images)
    raise OSError(f"the files of {directory} kept changing; try again")


def _names(directory: str) -> list[str]:
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(JOURNAL_NAME):
                continue
            try:
                regular = stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
            except FileNotFoundError:
                continue
            if regular:
                names.append(entry.name)
    return sorted(names)


def _close_all(images: dict[str, FileImage]) -> None:
    for image in images.values():
        image.close()
