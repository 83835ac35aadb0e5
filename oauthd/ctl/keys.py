"""
oauthctl's C{keys} commands: list the signing keys, and rotate them. No
key material is shown, nor sent: a key goes by its kid.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from oauthd.control import wire
from oauthd.ctl.commands import Connect
from oauthd.ctl.output import Terminal, emit, table, utc

KEY_COLUMNS = ["Key ID", "Algorithm", "Created (UTC)", "State", "Signs From (UTC)", "Expires At (UTC)"]


def _cells(row: Mapping[str, Any]) -> list[object]:
    return [row["kid"], row["alg"], utc(row["created"]), row["state"], utc(row["signs_from"]),
            utc(row["leaves_at"]) if row["leaves_at"] else ""]


def cmd_keys_ls(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    rows = json.loads(connect().call(wire.ListKeys)["rows"])
    emit(args, term, rows, lambda: table(KEY_COLUMNS, [_cells(row) for row in rows])
         if rows else "No signing keys yet.")


def cmd_keys_rotate(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    arguments: dict[str, object] = {"now": args.now}
    if args.alg:
        arguments["alg"] = args.alg
    rows = json.loads(connect().call(wire.RotateKeys, **arguments)["rows"])

    def told() -> str:
        when = "signs now" if args.now else "is published now and signs from {signs_from} UTC"
        lines = [f"New {row['alg']} key {row['kid']} " + when.format(signs_from=utc(row["signs_from"]))
                 for row in rows]
        return "\n".join(lines)

    emit(args, term, rows, told)
