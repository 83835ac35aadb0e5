"""
oauthctl's C{users consents} command: the clients a user consented to at
the authorization endpoint, and revoking one.
"""

from __future__ import annotations

import argparse
import json

from oauthd.control import wire
from oauthd.ctl.commands import Connect
from oauthd.ctl.output import Terminal, emit, table, utc


def cmd_users_consents(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    if args.revoke:
        row = connect().call(wire.RevokeConsent, name=args.name, client_id=args.revoke)
        emit(args, term, row, lambda: (
            f"Revoked the consent of {args.name} to client {row['client_id']} and "
            f"{row['revoked']} tokens it held for them."
        ))
        return
    rows = json.loads(connect().call(wire.ListConsents, name=args.name)["rows"])
    emit(args, term, rows, lambda: table(
        ["Client ID", "Client Name", "Scope", "Granted At (UTC)"],
        [[r["client_id"], r["client_name"], r["scope"], utc(r["granted_at"])] for r in rows],
    ) if rows else f"{args.name} has consented to no client.")
