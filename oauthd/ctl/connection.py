"""
oauthctl's connection to the daemon: where its control socket is, and a
synchronous AMP client over a blocking socket. A command-line tool may
block, and it speaks AMP by driving Twisted's own AMP protocol object over a
plain socket, so no reactor is needed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.protocols import amp
from twisted.python.failure import Failure

from oauthd.control import wire
from oauthd.control.wire import SOCKET_NAME, default_data_dir, unix_path


class CtlError(Exception):
    """
    The command failed; the message is one line for stderr.
    """


def socket_path(option: str | None, environ: Mapping[str, str]) -> str:
    """
    The control socket: C{--socket}, then C{$OAUTHD_SOCKET}, then the
    daemon's default (C{control.sock} in its default data directory). A
    C{unix:PATH[:options]} endpoint string is accepted too.
    """
    path = option or environ.get("OAUTHD_SOCKET") or os.path.join(
        default_data_dir(environ), SOCKET_NAME
    )
    unix = unix_path(path)
    return path if unix is None else unix


def _why(error: OSError) -> str:
    reasons = {
        errno.ENOENT: "no such file (is oauthd running? use --socket or $OAUTHD_SOCKET)",
        errno.ENOTDIR: "no such file (a parent is not a directory)",
        errno.EACCES: "permission denied (run as root or as the daemon's user)",
        errno.EPERM: "permission denied (run as root or as the daemon's user)",
        errno.ECONNREFUSED: "connection refused (is oauthd running?)",
        errno.ENOTSOCK: "not a socket",
    }
    return reasons.get(error.errno or 0, error.strerror or str(error))


def connect(path: str) -> Connection:
    """
    Connect to the control socket at C{path}.

    @raise CtlError: naming the path and why it cannot be used.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CtlError(f"cannot connect to {path}: {_why(e)}") from None
    if not stat.S_ISSOCK(mode):
        raise CtlError(f"cannot connect to {path}: not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        if "too long" in str(e):
            raise CtlError(f"cannot connect to {path}: the path is too long for a socket") from None
        raise CtlError(f"cannot connect to {path}: {_why(e)}") from None
    return Connection(sock, path)


class _SocketTransport:
    """
    The little of a transport that L{amp.AMP} uses, over a blocking socket.
    """

    disconnecting = False

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock = sock
        self._address = UNIXAddress(path)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self._sock.sendall(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._sock.close()

    def getPeer(self) -> UNIXAddress:
        return self._address

    def getHost(self) -> UNIXAddress:
        return self._address


class Connection:
    """
    A synchronous AMP client: each L{call} sends one command and reads until
    its answer arrives.
    """

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock = sock
        self.path = path
        self._answered = False
        self._protocol = amp.AMP()
        self._protocol.makeConnection(_SocketTransport(sock, path))

    def close(self) -> None:
        self._sock.close()

    def call(self, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
        """
        Run C{command} on the daemon.

        @raise CtlError: with the daemon's one-line error, or saying the
            connection was lost.
        """
        results: list[object] = []
        try:
            d = self._protocol.callRemote(command, **arguments)
        except amp.TooLong:
            raise CtlError("a value is too long for the control protocol (over 65,535 bytes)") from None
        except OSError as e:
            raise self._lost(e) from None
        d.addBoth(results.append)
        while not results:
            try:
                data = self._sock.recv(65536)
            except OSError as e:
                data = b""
                reason: Exception = e
            else:
                reason = ConnectionDone()
            if not data:
                self._protocol.connectionLost(Failure(reason))
                break
            self._protocol.dataReceived(data)
        result = results[0] if results else Failure(ConnectionDone())
        if isinstance(result, Failure):
            raise self._error(result.value or ConnectionDone(), command) from None
        self._answered = True
        assert isinstance(result, dict)
        return result

    def _lost(self, error: BaseException) -> CtlError:
        if not self._answered:
            return CtlError(
                f"{self.path}: the daemon closed the connection (is uid {os.getuid()}"
                " allowed to administer it? see admin_uids and admin_group)"
            )
        return CtlError(f"{self.path}: lost the connection to the daemon")

    def _error(self, error: BaseException, command: type[amp.Command]) -> CtlError:
        if isinstance(error, wire.ControlError):
            return CtlError(str(error))
        if isinstance(error, amp.UnhandledCommand):
            name = command.commandName.decode("ascii")
            return CtlError(f"the daemon does not know the command {name} (is it an older oauthd?)")
        if isinstance(error, (ConnectionDone, ConnectionLost, OSError)):
            return self._lost(error)
        return CtlError(f"the daemon failed to run the command: {error}")

    def pages(
        self, command: type[amp.Command], limit: int = 0, **arguments: Any,
    ) -> Iterator[dict[str, Any]]:
        """
        The rows of a paged listing, following its cursor to the end (or
        to C{limit} rows, if not 0).
        """
        cursor = ""
        count = 0
        while True:
            wanted = wire.PAGE_ROWS if not limit else min(wire.PAGE_ROWS, limit - count)
            page = self.call(command, cursor=cursor or None, limit=wanted, **arguments)
            for row in json.loads(page["rows"]):
                yield row
                count += 1
            cursor = page["cursor"]
            if not cursor or (limit and count >= limit):
                return
