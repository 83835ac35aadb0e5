"""
Where the daemon keeps its data and listens for its admins by default: the
configuration and oauthctl (through the control socket's wire schema) must
agree, so both read it here. A leaf: it imports nothing of oauthd.
"""

from __future__ import annotations

from collections.abc import Mapping

SOCKET_NAME = "control.sock"
"""
The control socket's file name in the data directory, by default.
"""


def default_data_dir(environ: Mapping[str, str]) -> str:
    """
    The data directory when none is configured: systemd's C{$STATE_DIRECTORY}
    (its first entry) if set, else C{./oauthd-data}.
    """
    state = environ.get("STATE_DIRECTORY", "")
    if state:
        return state.split(":")[0]
    return "./oauthd-data"
