# -*- test-case-name: tests.test_journal -*-
"""
Offline repair of a damaged journal: keep every record that verifies, keep
the damaged file beside it, and say what was done (L{RepairReport}).

Blocking, and only while no daemon holds the data directory's lock.

C{python -m oauthd.eventlog.repair DIR} runs it for C{oauthctl repair} (see
C{__main__.py}).  This is a package rather than a module so that C{-m} runs
that entry point without executing a second copy of a module that
C{oauthd.eventlog} has already imported (which Python warns about on
stderr).
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Iterator

from attrs import frozen

from oauthd.eventlog.errors import JournalCorrupt
from oauthd.eventlog.files import (
    check_private_directory,
    free_name,
    lock_directory,
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
    decode_header,
    encode_new_journal,
    resynchronise,
    walk_verified,
)

__all__ = ["DAMAGED_INFIX", "RepairReport", "repair"]

DAMAGED_INFIX = ".damaged-"

# The kept records are written a batch of about this many bytes at a time,
# so the encoded copy of the journal is never all in memory at once.
_BATCH_BYTES = 1 << 20


@frozen
class RepairReport:
    """
    What L{repair} did.

    @ivar journal: The journal file.
    @ivar kept_records: Records verified and kept, in order.
    @ivar skipped_bytes: Bytes dropped because no record verified in them.
    @ivar damaged_regions: The number of separate runs of dropped bytes.
    @ivar header_damaged: The header checksum did not verify (its salt was
        used anyway).
    @ivar damaged_copy: Where the damaged file was kept, or C{None} if
        nothing needed repair and the journal was left untouched.
    """

    journal: str
    kept_records: int
    skipped_bytes: int
    damaged_regions: int
    header_damaged: bool
    damaged_copy: str | None

    def describe(self) -> str:
        """
        One line for a human.
        """
        if self.damaged_copy is None:
            return (
                f"{self.journal}: no damage found; {self.kept_records} records"
                " verified, nothing changed"
            )
        header = " (the header was damaged)" if self.header_damaged else ""
        return (
            f"{self.journal}: kept {self.kept_records} verifiable records,"
            f" skipped {self.skipped_bytes} bytes in {self.damaged_regions}"
            f" damaged region(s){header}; the damaged file is kept as"
            f" {self.damaged_copy}"
        )


def repair(directory: str, *, now: float) -> RepairReport:
    """
    Rewrite a damaged journal with every record that verifies.

    Takes the directory's lock (so not while oauthd runs), walks the file
    resynchronising past every damaged region, and, if anything was
    damaged, keeps the damaged file as C{journal.oauthd.damaged-<UTC time>}
    and atomically replaces the journal with the verified records (fsync'd
    file, rename, fsync'd directory).  Blocking; an offline operation.

    @param now: The POSIX time to name the damaged copy with.
    @raise JournalLocked: oauthd (or another repair) holds the lock.
    @raise JournalCorrupt: the file is not an oauthd journal of a version
        this code reads, or its header is damaged and no record verifies;
        nothing is changed then.
    @raise FileNotFoundError: there is no journal in C{directory}.
    @raise UnsafeFile: C{directory} belongs to another user (run repair as
        its owner), or one of its files is not one to use (a symbolic link,
        say); nothing is changed then.
    """
    directory = os.path.abspath(directory)
    path = os.path.join(directory, JOURNAL_NAME)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no journal at {path}")
    check_private_directory(directory)
    lock_fd = lock_directory(directory, LOCK_NAME)
    try:
        remove_if_present(os.path.join(directory, TEMP_NAME))
        with open(open_private(path, os.O_RDONLY), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < HEADER_SIZE:
                raise JournalCorrupt(
                    f"{path} is {size} bytes long, too short for a journal"
                    " header; nothing can be recovered from it",
                    path,
                    0,
                )
            with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as buf:
                salt_crc, intact = decode_header(buf, path)
                kept, skipped, regions = _salvage(buf, size, salt_crc)
                if intact and not skipped:
                    return RepairReport(path, len(kept), 0, 0, False, None)
                if not intact and not kept and skipped:
                    raise JournalCorrupt(
                        f"journal {path} has a damaged header and not one of"
                        " its records verifies against it (the salt the"
                        " checksums depend on is probably what was damaged);"
                        " refusing to replace it with an empty journal. The"
                        " file is unchanged; move it aside by hand to start"
                        " empty",
                        path,
                        0,
                    )
                copy = _damaged_copy_name(path, now)
                try:
                    os.link(path, copy)
                except OSError:
                    _copy_private(buf, size, copy)
                new_journal = encode_new_journal(_batches_of(kept))
                write_new_file(directory, JOURNAL_NAME, TEMP_NAME, new_journal, os.fsync)
        return RepairReport(path, len(kept), skipped, regions, not intact, copy)
    finally:
        os.close(lock_fd)


def _salvage(
    buf: mmap.mmap, size: int, salt_crc: int
) -> tuple[list[bytes], int, int]:
    """
    @return: the payload of every verifiable record, the number of bytes
        skipped and the number of damaged regions.
    """
    kept: list[bytes] = []
    skipped = regions = 0
    offset = HEADER_SIZE
    while offset < size:
        payloads, offset, _ = walk_verified(buf, offset, size, salt_crc)
        kept += payloads
        if offset >= size:
            break
        resume = resynchronise(buf, offset + 1, size, salt_crc)
        stop = size if resume is None else resume
        skipped += stop - offset
        regions += 1
        offset = stop
    return kept, skipped, regions


def _batches_of(payloads: list[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for payload in payloads:
        batch.append(payload)
        size += len(payload)
        if size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    yield batch


def _damaged_copy_name(path: str, now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return free_name(f"{path}{DAMAGED_INFIX}{stamp}")


def _copy_private(buf: mmap.mmap, size: int, copy: str) -> None:
    fd = open_private(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, buf[:size])
        os.fsync(fd)
    finally:
        os.close(fd)
