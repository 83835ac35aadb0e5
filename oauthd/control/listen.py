"""
The control listener: its UNIX socket is bound under a 0177 umask (so it is
never, even for an instant, reachable by anyone but the daemon's user), then
set to the endpoint's mode (0600 by default) inside the 0700 data directory.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

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

    def privilegedStartService(self) -> None:
        with private_umask():
            super().privilegedStartService()


def control_service(description: str, factory: ControlFactory, reactor: Any) -> ControlService:
    """
    The service listening on C{description} (a Twisted endpoint string) for
    admin connections. For a UNIX socket, a missing parent directory is made
    0700; an existing one that others can enter is logged as a warning.
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
    return ControlService(serverFromString(reactor, description), factory)


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
