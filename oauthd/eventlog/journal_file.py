# -*- test-case-name: tests.test_journal -*-
"""
The file journal's blocking side: the journal file, the data directory's
lock, and the new file a compaction writes.

L{JournalFile.open} (lock, verification, cutting off a torn tail) runs
before the reactor does.  Every other method runs as a job on the journal's
writer thread, one job at a time, so nothing here needs a lock: the reactor
side (L{oauthd.eventlog.journal}) alone decides which job comes next.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

from attrs import define

from twisted.logger import Logger

from oauthd.eventlog.errors import JournalCorrupt
from oauthd.eventlog.files import (
    free_name,
    fsync_directory,
    lock_directory,
    make_private_directory,
    open_private,
    remove_if_present,
    write_all,
    write_new_file,
)
from oauthd.eventlog.format import (
    HEADER_SIZE,
    JOURNAL_NAME,
    LOCK_NAME,
    TEMP_NAME,
    TORN_INFIX,
    could_be_torn,
    decode_header,
    encode_new_journal,
    encode_records,
    new_header,
    resynchronise,
    walk_verified,
)

__all__ = ["CompactionAborted", "JournalFile"]

# The journal's log lines keep one namespace, whichever module says them.
_log = Logger(namespace="oauthd.eventlog.journal")

# A torn tail is copied to its side file this many bytes at a time.
_COPY_CHUNK = 1 << 20


class CompactionAborted(Exception):
    """
    Writing the new file failed before it replaced the old one; the old file
    is untouched and stays in use.  The cause is chained.
    """


@define(eq=False)
class JournalFile:
    """
    An open journal file, holding its directory's lock.

    Build it with L{JournalFile.open}.
    """

    directory: str
    path: str
    _fd: int
    _lock_fd: int
    _salt_crc: int
    # What fsyncs a descriptor; None skips every fsync (nothing is durable).
    _sync_function: Callable[[int], None] | None
    # The new file a compaction writes, once its first slice is written.
    _new_fd: int | None = None
    _new_salt_crc: int = 0

    @classmethod
    def open(
        cls, directory: str, sync_function: Callable[[int], None] | None
    ) -> tuple[JournalFile, list[bytes], int]:
        """
        Open (creating if need be) the journal in C{directory}: see
        L{oauthd.eventlog.journal.FileJournal.open}.  Blocking.

        @return: the file, the payloads of its records and its size.
        """
        directory = os.path.abspath(directory)
        path = os.path.join(directory, JOURNAL_NAME)
        make_private_directory(directory)
        lock_fd = lock_directory(directory, LOCK_NAME)
        fd = -1
        try:
            remove_if_present(os.path.join(directory, TEMP_NAME))
            if not os.path.lexists(path):
                write_new_file(
                    directory, JOURNAL_NAME, TEMP_NAME, encode_new_journal([]), sync_function
                )
            fd = open_private(path, os.O_RDWR | os.O_APPEND)
            salt_crc, loaded, size = _recover(fd, path, directory, sync_function)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            os.close(lock_fd)
            raise
        return cls(directory, path, fd, lock_fd, salt_crc, sync_function), loaded, size

    def append(self, payloads: list[bytes]) -> None:
        """
        Write C{payloads} as records at the end of the journal and fsync.
        """
        if payloads:
            write_all(self._fd, encode_records(self._salt_crc, payloads))
            self._sync(self._fd)

    def write_snapshot(self, payloads: list[bytes]) -> None:
        """
        Write C{payloads}, a slice of a compaction's snapshot, to the new
        file (begun by the first slice) and fsync it.

        @raise CompactionAborted: that failed; the new file is gone.
        """
        try:
            fd = self._open_new()
            write_all(fd, encode_records(self._new_salt_crc, payloads))
            # Sync as we go: appends queued behind this job then wait for
            # one slice's fsync, not for the whole file's at the end.
            self._sync(fd)
        except Exception as e:
            self._discard_new_quietly()
            raise CompactionAborted() from e

    def replace_with_new(self, tail: list[bytes]) -> None:
        """
        Write C{tail} (the appends carried over) to the new file, fsync it,
        rename it over the journal and fsync the directory; from then on
        appends go to the new file.

        @raise CompactionAborted: the new file could not be completed or
            renamed; it is gone and the old one stays in use.
        @raise OSError: the directory fsync failed, so the rename may not be
            durable.
        """
        try:
            fd = self._open_new()
            write_all(fd, encode_records(self._new_salt_crc, tail))
            self._sync(fd)
            os.rename(os.path.join(self.directory, TEMP_NAME), self.path)
        except Exception as e:
            self._discard_new_quietly()
            raise CompactionAborted() from e
        # The new file is in place; from here on appends go to it.
        old, self._fd, self._new_fd = self._fd, fd, None
        self._salt_crc = self._new_salt_crc
        try:
            os.close(old)
        except OSError:
            pass
        if self._sync_function is not None:
            fsync_directory(self.directory, self._sync_function)

    def discard_new(self) -> None:
        """
        Remove the new file of a compaction that will not finish, if begun.
        """
        if self._new_fd is not None:
            fd, self._new_fd = self._new_fd, None
            try:
                os.close(fd)
            finally:
                remove_if_present(os.path.join(self.directory, TEMP_NAME))

    def close(self) -> None:
        """
        Remove a new file a failure left behind, close the journal and
        release the lock.
        """
        try:
            self._discard_new_quietly()
            os.close(self._fd)
        finally:
            os.close(self._lock_fd)

    def _sync(self, fd: int) -> None:
        if self._sync_function is not None:
            self._sync_function(fd)

    def _open_new(self) -> int:
        if self._new_fd is None:
            temp = os.path.join(self.directory, TEMP_NAME)
            remove_if_present(temp)
            fd = open_private(temp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
            self._new_fd = fd
            header, self._new_salt_crc = new_header()
            write_all(fd, header)
        return self._new_fd

    def _discard_new_quietly(self) -> None:
        try:
            self.discard_new()
        except OSError:
            pass


def _corrupt(path: str, directory: str, offset: int, reason: str, why: str) -> JournalCorrupt:
    return JournalCorrupt(
        f"journal {path} is damaged at byte offset {offset} ({reason}) and"
        f" {why}, so it is not a torn tail; refusing to start. To keep every"
        " verifiable record (a copy of the damaged file is kept), run:"
        f" oauthctl repair --data {directory}",
        path,
        offset,
    )


def _recover(
    fd: int, path: str, directory: str, sync: Callable[[int], None] | None
) -> tuple[int, list[bytes], int]:
    """
    Verify the open journal C{fd}, cutting off a torn tail (kept in a side
    file).

    @return: the salt CRC, the payloads of its records and the (new) file
        size.
    """
    size = os.fstat(fd).st_size
    if size < HEADER_SIZE:
        raise JournalCorrupt(
            f"{path} is {size} bytes long, too short for the"
            f" {HEADER_SIZE}-byte journal header; it is not a usable oauthd"
            " journal",
            path,
            0,
        )
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as buf:
        salt_crc, intact = decode_header(buf, path)
        if not intact:
            raise JournalCorrupt(
                f"journal {path} has a damaged header (checksum mismatch at"
                " byte offset 0); refusing to start. To keep every verifiable"
                f" record, run: oauthctl repair --data {directory}",
                path,
                0,
            )
        payloads, end, problem = walk_verified(buf, HEADER_SIZE, size, salt_crc)
        if problem is not None:
            if resynchronise(buf, end + 1, size, salt_crc) is not None:
                raise _corrupt(path, directory, end, problem, "verifiable records follow the damage")
            if not could_be_torn(buf, end, size):
                raise _corrupt(
                    path, directory, end, problem,
                    "what is there is not what an interrupted append leaves (a"
                    " record cut short, or zeros to the end of the file) and may"
                    " be an acknowledged change",
                )
            kept_in = _keep_cut_bytes(directory, end, buf, size, sync)
    if problem is not None:
        os.ftruncate(fd, end)
        if sync is not None:
            sync(fd)
        _log.warn(
            "Journal {path}: cut off a torn record at the end of the file"
            " ({dropped_bytes} bytes from byte offset {offset}: {reason});"
            " an interrupted write left it and it was never acknowledged."
            " The bytes cut are kept in {kept_in}",
            path=path,
            dropped_bytes=size - end,
            offset=end,
            reason=problem,
            kept_in=kept_in,
        )
    return salt_crc, payloads, end


def _keep_cut_bytes(
    directory: str, offset: int, buf: mmap.mmap, size: int, sync: Callable[[int], None] | None
) -> str:
    """
    Save the bytes of a torn tail, from C{offset} on, to a new side file
    (durably, before they are cut), so that nothing is destroyed even if
    the tail was not what it seemed.

    @return: the side file's path.
    """
    side = free_name(os.path.join(directory, f"{JOURNAL_NAME}{TORN_INFIX}{offset}"))
    fd = open_private(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for start in range(offset, size, _COPY_CHUNK):
            write_all(fd, buf[start : min(size, start + _COPY_CHUNK)])
        if sync is not None:
            sync(fd)
    except BaseException:
        os.close(fd)
        remove_if_present(side)
        raise
    os.close(fd)
    if sync is not None:
        fsync_directory(directory, sync)
    return side
