"""
The control listener: its UNIX socket is bound under a 0177 umask (so it is
never, even for an instant, reachable by anyone but the daemon's user), then
set to the endpoint's mode (0600 by default) inside the 0700 data directory;
with an admin group, the daemon then gives the socket to that group, mode
0660.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from oauthd.config import ConfigError
from oauthd.control.server import ControlFactory
from oauthd.control.wire import unix_path

log = Logger()


@contextmanager
def private_umask() -> Iterator[None]:
    """
    Create files under a 0177 umask (owner read and write only) meanwhile.
    The umask is process-wide, but only ever made stricter here.
    """
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


class ControlService(StreamServerEndpointService):
    """
    The control listener: binds its UNIX socket under L{private_umask}, so
    there is no moment between bind() and the endpoint's chmod() at which
    the socket has looser permissions than 0600; fails to start loudly.
    """

    _raiseSynchronously = True

    def __init__(
        self, endpoint: Any, factory: ControlFactory, path: str | None = None,
        admin_gid: int | None = None, chown: Callable[[str, int, int], None] = os.chown,
    ) -> None:
        super().__init__(endpoint, factory)
        self.path = path
        self.admin_gid = admin_gid
        self._chown = chown

    def privilegedStartService(self) -> None:
        with private_umask():
            super().privilegedStartService()
        if self.path is not None and self.admin_gid is not None:
            self._admit_group(self.path, self.admin_gid)

    def _admit_group(self, path: str, gid: int) -> None:
        """
        Give the socket to the admin group, mode 0660 (group first, so it is
        never open to the group it had before).

        @raise ConfigError: if the socket cannot be given to the group.
        """
        try:
            self._chown(path, -1, gid)
            os.chmod(path, 0o660)
        except OSError as e:
            raise ConfigError(
                f"admin_group: cannot give the control socket {path} to group {gid}: {e.strerror}"
            ) from None
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        if not (parent.st_mode & 0o001 or (parent.st_gid == gid and parent.st_mode & 0o010)):
            log.warn(
                "the admin group cannot reach the control socket: its directory {directory} "
                "does not let group {gid} in (make it that group's, mode 2750)",
                directory=os.path.dirname(os.path.abspath(path)), gid=gid,
            )


def control_service(
    description: str, factory: ControlFactory, reactor: Any, admin_gid: int | None = None,
) -> ControlService:
    """
    The service listening on C{description} (a Twisted endpoint string) for
    admin connections. For a UNIX socket, a missing parent directory is made
    0700; an existing one that others can enter is logged as a warning. With
    C{admin_gid}, the socket is given to that group, mode 0660, whatever the
    endpoint's mode.
    """
    path = unix_path(description)
    if path is not None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        elif stat.S_IMODE(os.stat(parent).st_mode) & 0o077:
            log.warn(
                "control socket directory {directory} is open to others (mode {mode:o}); "
                "make it 0700", directory=parent, mode=stat.S_IMODE(os.stat(parent).st_mode),
            )
        remove_stale_socket(path)
    return ControlService(serverFromString(reactor, description), factory, path, admin_gid)


def remove_stale_socket(path: str) -> None:
    """
    Remove a socket file a crashed daemon left behind, which would otherwise
    make every restart fail with "address already in use". Only a socket
    nobody listens on is removed (connecting to it is refused).
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            log.info("removed the stale control socket {path}", path=path)
        except OSError:
            pass
