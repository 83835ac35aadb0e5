"""
oauthctl's C{users 2fa} commands: turn a user's TOTP second factor on and
off, and show its status.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Mapping
from typing import Any

from oauthd.control import wire
from oauthd.ctl.commands import Connect
from oauthd.ctl.output import Terminal, emit, fields_table, utc


def qr_code(text: str) -> str:
    """
    C{text} as a QR code drawn with Unicode half blocks (two rows of modules
    a line), dark on light as a phone's camera expects.

    Drawn by segno (pure Python, no dependencies), imported here rather than
    at the top so that no other command pays for it.
    """
    import segno

    drawing = io.StringIO()
    segno.make(text, error="m").terminal(out=drawing, compact=True)
    return drawing.getvalue().rstrip("\n")


def status_fields(row: Mapping[str, Any]) -> list[tuple[str, object]]:
    return [
        ("Name", row["name"]),
        ("Two-Factor", "on" if row["enabled"] else "off"),
        ("Enabled At (UTC)", utc(row["enabled_at"]) if row["enabled"] else ""),
        ("Recovery Codes Left", row["recovery_codes_left"] if row["enabled"] else ""),
    ]


def cmd_users_2fa_enable(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.EnableSecondFactor, name=args.name)
    if args.json:
        emit(args, term, row, str)
        return
    term.print(f"Turned on two-factor authentication for {row['name']}.")
    term.print()
    term.print("Scan this QR code with the user's authenticator app, or enter the URI or the secret:")
    term.print()
    term.print(qr_code(row["uri"]))
    term.print()
    term.print(row["uri"])
    term.print(f"Secret: {row['secret']}")
    term.print()
    term.print(
        "PLEASE GIVE THE USER THESE RECOVERY CODES, EACH GOOD FOR ONE LOGIN WITHOUT THE APP, "
        "AS YOU WILL NOT BE ABLE TO SEE THEM AGAIN:"
    )
    term.print()
    for code in row["recovery_codes"]:
        term.print(f"    {code}")


def cmd_users_2fa_disable(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.DisableSecondFactor, name=args.name)
    emit(args, term, row, lambda: (
        f"Turned off two-factor authentication for {row['name']}; revoked {row['revoked']} tokens "
        "(app passwords and what they gave are kept)."
    ))


def cmd_users_2fa_status(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.SecondFactorStatus, name=args.name)
    emit(args, term, row, lambda: fields_table(status_fields(row)))
