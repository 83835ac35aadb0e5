"""
The systemd readiness protocol (sd_notify), which Twisted does not provide: a
datagram to C{$NOTIFY_SOCKET} once every listener is bound, so a
C{Type=notify} unit is started only when the daemon can serve.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """
    Send C{state} (e.g. C{"READY=1"}) to the service manager.

    @return: whether a service manager was listening; C{False} when not run
        by systemd, which is not an error.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        # A leading "@" names a socket in the abstract namespace.
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(address)
            s.sendall(state.encode("ascii"))
        except OSError:
            return False
    return True
