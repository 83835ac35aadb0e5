"""
The systemd readiness protocol (sd_notify), which Twisted does not provide: a
datagram to C{$NOTIFY_SOCKET} once every listener is bound, so a
C{Type=notify} unit is started only when the daemon can serve; and
C{RELOADING=1} then C{READY=1} around a reload of the configuration.
"""

from __future__ import annotations

import os
import socket
import time
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


def reloading(now_usec: int | None = None) -> str:
    """
    The notification that a reload begins; systemd wants the time it began
    on the monotonic clock with it (sd_notify(3)). C{READY=1} ends it.

    @param now_usec: the monotonic time in microseconds (tests).
    """
    if now_usec is None:
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={now_usec}"
