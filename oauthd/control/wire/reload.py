"""
The control protocol's C{Reload} (C{oauthctl reload}): the daemon reads its
configuration again and runs with what can change while it runs.

changed: a JSON array of [key, old, new], the values as the file has them;
restart: a JSON array of the keys whose new value waits for a restart. A
configuration that does not load is refused with C{INVALID_VALUE}, naming
what is wrong; the running one is kept.
"""

from __future__ import annotations

from twisted.protocols import amp

from oauthd.control.wire import ControlCommand


class Reload(ControlCommand):
    response = [(b"changed", amp.Unicode()), (b"restart", amp.Unicode())]
