"""
oauthctl's C{reload}: the daemon reads its configuration again, as on
SIGHUP, and says what changed and what waits for a restart. A configuration
that does not load is an error (exit status 1); the daemon keeps running
with the one it has.
"""

from __future__ import annotations

import argparse
import json

from oauthd.control import wire
from oauthd.ctl.commands import Connect
from oauthd.ctl.output import Terminal, emit


def cmd_reload(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    answer = connect().call(wire.Reload)
    outcome = {
        "changed": [{"key": key, "old": old, "new": new}
                    for key, old, new in json.loads(answer["changed"])],
        "restart": json.loads(answer["restart"]),
    }

    def told() -> str:
        lines = [f"{change['key']}: {change['old']} -> {change['new']}" for change in outcome["changed"]]
        if not lines:
            lines.append("Reloaded the configuration: nothing changed.")
        else:
            lines.insert(0, "Reloaded the configuration:")
        if outcome["restart"]:
            lines.append("Changed, but needs a restart: " + ", ".join(outcome["restart"]))
        return "\n".join(lines)

    emit(args, term, outcome, told)
