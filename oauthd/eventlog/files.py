"""
Private files: how the event log, and the audit trail beside it, create
files nobody else can read, write them whole, lock their directory and
replace a file atomically.

Files are 0600 and directories 0700 whatever the umask: the umask belongs
to whoever started the daemon, while what the files hold (token digests,
audit lines) must stay private regardless.

Whoever controls a directory can plant a symbolic link, a FIFO or another
user's file in it under one of our names, and a process running as root
(the daemon started as root, C{oauthctl repair} run by root) would then
truncate, write or chmod whatever it points at.  So a data directory must
belong to the running user or to root; nothing is opened through a
symbolic link; and nothing is chmod'ed that this code did not create: an
existing file or directory is used only if it is already ours and private,
otherwise L{UnsafeFile} says which and what to do.

All of it is blocking I/O: call it before the reactor runs, offline, or on
a writer thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
from collections.abc import Callable, Iterable

from oauthd.eventlog.errors import JournalLocked

__all__ = [
    "UnsafeFile",
    "check_private_directory",
    "check_owner",
    "free_name",
    "fsync_directory",
    "lock_directory",
    "make_private_directory",
    "open_private",
    "remove_if_present",
    "write_all",
    "write_new_file",
]

# O_NONBLOCK: opening a FIFO planted under one of our names must not hang;
# it is cleared again once the file is known to be a regular one.
_SAFE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeFile(OSError):
    """
    A file or directory oauthd will not use as it is: a symbolic link, not
    a regular file, another user's, or open to others.  The message (its
    C{str}, and its C{strerror}) names it and says what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)

    def __str__(self) -> str:
        return str(self.strerror)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_owner(path: str, owner: int, euid: int) -> None:
    """
    Refuse C{path}, owned by C{owner}, unless it belongs to the user
    C{euid} we run as or to root.

    @raise UnsafeFile: it belongs to someone else.
    """
    if owner not in (euid, 0):
        raise UnsafeFile(
            f"{path} belongs to {_user(owner)}, not to the user this runs as"
            f" ({_user(euid)}) nor to root; oauthd uses no directory another"
            " user controls: run it (and oauthctl repair) as its owner"
        )


def _check_existing_file(path: str, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise UnsafeFile(
            f"{path} is not a regular file; oauthd opens nothing else under"
            " its own names: remove it"
        )
    euid = os.geteuid()
    if status.st_uid != euid:
        raise UnsafeFile(
            f"{path} belongs to {_user(status.st_uid)}, not to the user this"
            f" runs as ({_user(euid)}); oauthd writes no file of another"
            " user's: run it as the owner of its data directory"
        )
    if status.st_mode & 0o077:
        raise UnsafeFile(
            f"{path} is open to others (mode {stat.S_IMODE(status.st_mode):04o});"
            " oauthd changes no permissions it did not set: make it private"
            f" (chmod 600 {path})"
        )


def open_private(path: str, flags: int) -> int:
    """
    Open C{path}, one of our private files, with C{flags}.

    A file this call creates is made 0600 whatever the umask.  It never
    follows a symbolic link, and an existing file is used only if it is a
    regular file of the running user's that group and others cannot
    access; its mode is never changed.

    @raise UnsafeFile: the file exists and is not one we may use.
    """
    if flags & os.O_CREAT and not flags & os.O_EXCL:
        # Knowing whether this call created the file is what tells us
        # whether we may chmod it.
        try:
            return open_private(path, flags | os.O_EXCL)
        except FileExistsError:
            flags &= ~os.O_CREAT
    try:
        fd = os.open(path, flags | _SAFE_FLAGS, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise UnsafeFile(
                f"{path} is a symbolic link; oauthd never follows one to a"
                " file it keeps private: remove it"
            ) from None
        raise
    try:
        if flags & os.O_EXCL:
            # The mode given to open() is masked by the umask; fchmod is not.
            os.fchmod(fd, 0o600)
        else:
            _check_existing_file(path, os.fstat(fd))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_to_read(path: str) -> int:
    """
    Open C{path} to read it, whoever owns it (a check run by another user,
    root included): never through a symbolic link, and only a regular file,
    so a planted FIFO cannot hang the reader.

    @raise UnsafeFile: it is a symbolic link or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _SAFE_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise UnsafeFile(f"{path} is a symbolic link; oauthd does not follow it") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_directory(directory: str, *, euid: int | None = None) -> None:
    """
    Create C{directory} (its parents as usual, itself 0700 whatever the
    umask) if it is missing, then check it (L{check_private_directory}).
    """
    os.makedirs(os.path.dirname(os.path.abspath(directory)), exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(directory, 0o700)
    check_private_directory(directory, euid=euid)


def check_private_directory(directory: str, *, euid: int | None = None) -> None:
    """
    Refuse C{directory} unless it belongs to the running user (C{euid},
    the effective uid by default; tests pass another) or to root, and group
    and others have no access to it.  It is never chmod'ed: given by
    mistake, it could be C{/etc}.

    @raise UnsafeFile: it is not such a directory.
    @raise OSError: it cannot be looked at.
    """
    euid = os.geteuid() if euid is None else euid
    link = os.lstat(directory)
    if stat.S_ISLNK(link.st_mode):
        # A link to a directory is an administrator's choice only if it is
        # theirs: one planted by another user could point anywhere.
        check_owner(f"{directory} (a symbolic link)", link.st_uid, euid)
    status = os.stat(directory)
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafeFile(f"{directory} is not a directory")
    check_owner(directory, status.st_uid, euid)
    if status.st_mode & 0o077:
        raise UnsafeFile(
            f"{directory} is open to others (mode {stat.S_IMODE(status.st_mode):04o});"
            " oauthd changes no permissions it did not set: make it private"
            f" (chmod 700 {directory})"
        )


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


def free_name(path: str) -> str:
    """
    C{path}, or if something is there already C{path.2}, C{path.3}, ...:
    the first name nothing has, for a file that must not replace another.
    """
    name, serial = path, 1
    while os.path.lexists(name):
        serial += 1
        name = f"{path}.{serial}"
    return name


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
