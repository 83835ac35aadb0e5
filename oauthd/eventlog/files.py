"""
Private files: how the event log, and the audit trail beside it, create
files nobody else can read, write them whole, lock their directory and
replace a file atomically.

Files are 0600 and directories 0700 whatever the umask: the umask belongs
to whoever started the daemon, while what the files hold (token digests,
audit lines) must stay private regardless.  All of it is blocking I/O: call
it before the reactor runs, offline, or on a writer thread.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable

from oauthd.eventlog.errors import JournalLocked

__all__ = [
    "fsync_directory",
    "lock_directory",
    "make_private_directory",
    "open_private",
    "remove_if_present",
    "write_all",
    "write_new_file",
]


def open_private(path: str, flags: int) -> int:
    """
    Open C{path} with C{flags}; a file it creates, and the file it opens, are
    mode 0600 whatever the umask.
    """
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    try:
        # The mode given to open() is masked by the umask and ignored for a
        # file that exists already; fchmod is neither.
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_directory(directory: str) -> None:
    """
    Create C{directory} (and its parents) if need be, and make it 0700 even
    if it existed with looser permissions.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)


def fsync_directory(directory: str, fsync_function: Callable[[int], None]) -> None:
    """
    Make the entries of C{directory} (a rename into it) durable.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync_function(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """
    Write all of C{data}: one os.write() may write only part of it.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def remove_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def lock_directory(directory: str, lock_name: str) -> int:
    """
    Take the exclusive lock on C{directory} (a flock on its file
    C{lock_name}) and record our pid in it, for the message a second
    process gets.

    @return: the lock file's descriptor; closing it releases the lock.
    @raise JournalLocked: another process holds it.
    """
    fd = open_private(os.path.join(directory, lock_name), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "pid unknown"
        raise JournalLocked(
            f"another oauthd instance ({who}) holds the lock on {directory};"
            " only one process may use a data directory at a time"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_new_file(
    directory: str,
    name: str,
    temp_name: str,
    chunks: Iterable[bytes],
    fsync_function: Callable[[int], None] | None,
) -> int:
    """
    Atomically replace (or create) the file C{name} in C{directory} with one
    holding C{chunks}, written first as C{temp_name}: a crash at any instant
    leaves the old file or the new one, whole.

    @param fsync_function: fsyncs the new file before the rename and the
        directory after it, or C{None} not to (then nothing is durable).
    @return: the size of the new file.
    """
    temp = os.path.join(directory, temp_name)
    remove_if_present(temp)
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        size = 0
        for chunk in chunks:
            write_all(fd, chunk)
            size += len(chunk)
        if fsync_function is not None:
            fsync_function(fd)
    except BaseException:
        os.close(fd)
        remove_if_present(temp)
        raise
    os.close(fd)
    os.rename(temp, os.path.join(directory, name))
    if fsync_function is not None:
        fsync_directory(directory, fsync_function)
    return size
