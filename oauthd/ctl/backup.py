# -*- test-case-name: tests.test_backup -*-
"""
oauthctl's C{backup DEST}: a copy of the running daemon's data, written as
a new data directory C{DEST}.

The daemon compacts its journal and streams that file and the audit
trail's files, a page at a time (L{oauthd.control.wire.backup}); oauthctl
writes them, ready-framed as they come, into a private directory beside
C{DEST} (0700, files 0600 from their creation: the journal holds the
signing keys), fsyncs each file and the directory, then renames it to
C{DEST}: a C{DEST} that exists is a whole backup. It overwrites nothing:
C{DEST} must not exist. A failed or interrupted backup removes what it
wrote.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import stat
from typing import Any

from oauthd.control import wire
from oauthd.ctl.commands import Connect
from oauthd.ctl.connection import Connection, CtlError
from oauthd.ctl.output import Terminal, emit, size


def cmd_backup(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    dest = os.path.abspath(args.dest)
    partial = _claim(dest)
    try:
        files = _copy(connect(), partial)
        _put_in_place(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    total = sum(length for _, length in files)
    report = {"path": dest, "bytes": total,
              "files": [{"name": name, "bytes": length} for name, length in files]}
    emit(args, term, report, lambda: (
        f"Backed up to {dest}: {len(files)} files, {size(total)}. To restore it, copy its"
        " contents into an empty data directory, with oauthd stopped."
    ))


def _claim(dest: str) -> str:
    """
    Check C{DEST} and make the private directory the copy is written in,
    beside it.

    @raise CtlError: C{DEST} exists, or cannot be made where it is named.
    """
    if os.path.lexists(dest):
        raise CtlError(f"{dest} exists; a backup goes to a new directory and overwrites"
                       " nothing: remove it or name another")
    parent = os.path.dirname(dest)
    try:
        if not stat.S_ISDIR(os.stat(parent).st_mode):
            raise CtlError(f"cannot create {dest}: {parent} is not a directory")
    except FileNotFoundError:
        raise CtlError(f"cannot create {dest}: {parent} does not exist") from None
    except OSError as e:
        raise CtlError(f"cannot create {dest}: cannot reach {parent} ({e.strerror})") from None
    partial = os.path.join(parent, f".{os.path.basename(dest)}.partial-{os.getpid()}")
    try:
        os.mkdir(partial, 0o700)
        os.chmod(partial, 0o700)
    except OSError as e:
        raise CtlError(f"cannot create {dest}: {_why(e, parent)}") from None
    return partial


def _why(error: OSError, where: str) -> str:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where} is not writable ({error.strerror})"
    return str(error.strerror or error)


def _copy(connection: Connection, partial: str) -> list[tuple[str, int]]:
    started = connection.call(wire.StartBackup)
    number = started["backup"]
    files = _listing(started["files"])
    try:
        for name, length in files:
            _write(connection, number, name, length, os.path.join(partial, name))
        _fsync_directory(partial)
    except OSError as e:
        raise CtlError(f"cannot write the backup: {_why(e, os.path.dirname(partial))}") from None
    connection.call(wire.EndBackup, backup=number)
    return files


def _listing(text: str) -> list[tuple[str, int]]:
    """
    The daemon's list of files, each a plain name in a directory.
    """
    try:
        listed: Any = json.loads(text)
        files = [(name, length) for name, length in listed]
    except (ValueError, TypeError):
        files = []
    if not files or any(
        not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name
        or type(length) is not int or length < 0
        for name, length in files
    ) or len({name for name, _ in files}) != len(files):
        raise CtlError("the daemon sent a list of files oauthctl cannot use")
    return files


def _write(connection: Connection, number: int, name: str, length: int, path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        # The mode given to open() is masked by the umask; fchmod is not.
        os.fchmod(fd, 0o600)
        written = 0
        page = 0
        while written < length:
            data = connection.call(wire.ReadBackup, backup=number, file=name, page=page)["data"]
            if len(data) != min(wire.BACKUP_PAGE, length - written):
                raise CtlError(f"the daemon sent page {page} of {name} with {len(data)} bytes")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            written += len(data)
            page += 1
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_in_place(partial: str, dest: str) -> None:
    if os.path.lexists(dest):
        raise CtlError(f"{dest} appeared while the backup was written; nothing was kept")
    try:
        os.rename(partial, dest)
        _fsync_directory(os.path.dirname(dest))
    except OSError as e:
        raise CtlError(f"cannot create {dest}: {_why(e, os.path.dirname(dest))}") from None
