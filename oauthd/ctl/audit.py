"""
oauthctl's C{audit} command: read the daemon's audit trail, filtered, as a
table or as JSON lines, following it with C{--follow}; and C{audit verify},
which checks its whole hash chain (exit status 1 when it is broken).

Times are given as ISO 8601 (C{2026-12-05T10:00:00Z}, C{2026-12-05}; UTC
unless an offset is given) or as a time ago (C{90s}, C{30m}, C{1h}, C{7d},
C{2w}), and sent to the daemon as POSIX seconds.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from oauthd.control import wire
from oauthd.ctl.commands import Connect, UsageError
from oauthd.ctl.connection import Connection, CtlError
from oauthd.ctl.output import Terminal, cell, utc

_AGO = re.compile(r"([0-9]{1,9})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

ROW = "{seq:>8}  {time:19}  {event:22}  {outcome:9}  {details}"
"""
One event a line, in fixed columns, so that rows can be printed as they
arrive.
"""


def parse_time(option: str, text: str, now: float) -> float:
    """
    @raise UsageError: saying what a time may be.
    """
    found = _AGO.fullmatch(text.strip())
    if found:
        when = now - int(found[1]) * _UNITS[found[2]]
    else:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"oauthctl audit: error: {option} {text!r} is not a time: give ISO 8601"
                " (2026-12-05T10:00:00Z, 2026-12-05) or a time ago (30m, 1h, 7d)") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        when = parsed.timestamp()
    if when < 0:
        raise UsageError(f"oauthctl audit: error: {option} {text!r} is before 1970")
    return float(when)


def positive(text: str) -> int:
    """
    An argparse type: a whole number from 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not 1 or more")
    return value


def add_parser(command: Any, commands: Any) -> None:
    """
    C{audit} on oauthctl's command line (C{command} adds one).
    """
    sub = command(commands, "audit", cmd_audit,
                  "read the audit trail (filters combine), or check its hash chain (audit verify)")
    sub.add_argument("action", nargs="?", choices=["verify"],
                     help="verify: check the whole chain; exit status 1 if it is broken")
    sub.add_argument("--since", metavar="TIME", help="from this time on: ISO 8601 (UTC unless"
                     " it has an offset) or a time ago (30m, 1h, 7d)")
    sub.add_argument("--until", metavar="TIME", help="up to this time (as --since)")
    sub.add_argument("--event", metavar="E", help="an event (token.issue) or a kind of event (token)")
    sub.add_argument("--client", metavar="ID", help="events of this client")
    sub.add_argument("--user", metavar="NAME", help="events of this user")
    sub.add_argument("--node", metavar="ID", help="changes made by this node (over a shared event log)")
    sub.add_argument("-n", "--limit", type=positive, metavar="N", help="show at most N events")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="keep printing new events as they are written (from now, unless --since)")


def cmd_audit(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    filters = ("since", "until", "event", "client", "user", "node", "limit", "follow")
    if args.action == "verify":
        given = [f"--{name}" for name in filters if getattr(args, name)]
        if given:
            raise UsageError(f"oauthctl audit verify: error: it checks the whole trail; {given[0]} does not apply")
        verify(args, term, connect())
        return
    if args.follow and args.until:
        raise UsageError("oauthctl audit: error: --follow reads on from now; it takes no --until")
    now = term.clock()
    arguments: dict[str, Any] = {
        "since": None if args.since is None else parse_time("--since", args.since, now),
        "until": None if args.until is None else parse_time("--until", args.until, now),
        "event": args.event, "client": args.client, "user": args.user, "node": args.node, "follow": args.follow or None,
    }
    if not args.json:
        term.print(ROW.format(seq="Seq", time="Time (UTC)", event="Event", outcome="Outcome",
                              details="Details"))
    # A page that follows the trail may be empty: pages() goes on to the next.
    for row in connect().pages(wire.ReadAudit, args.limit or 0, **arguments):
        term.print(json.dumps(row, ensure_ascii=False) if args.json else line(row))
        term.stdout.flush()


def line(row: dict[str, Any]) -> str:
    fixed = ("seq", "time", "event", "outcome")
    details = " ".join(f"{name}={cell(value)}" for name, value in row.items() if name not in fixed)
    when = row.get("time")
    return ROW.format(seq=row.get("seq", ""), time=utc(when) if isinstance(when, int) else "",
                      event=cell(row.get("event", "")), outcome=cell(row.get("outcome", "")),
                      details=details).rstrip()


def verify(args: argparse.Namespace, term: Terminal, connection: Connection) -> None:
    found = connection.call(wire.VerifyAudit)
    found["intact"] = not found["file"]
    if args.json:
        term.print(json.dumps(found, indent=2))
    elif found["intact"]:
        begins = f"from seq {found['anchor_seq']}" + (
            ", where the journal says it begins" if found["anchor_seq"] > 1 else "")
        term.print(f"The audit trail verifies: {found['lines']} lines, {begins} to seq {found['last_seq']}.")
    else:
        term.print(f"The audit trail is broken at {found['file']} line {found['line']}:"
                   f" {found['reason']}.")
        term.print(f"The {found['lines']} lines before it verify.")
    if not found["intact"]:
        raise CtlError(f"the audit trail does not verify ({found['file']} line {found['line']})")
