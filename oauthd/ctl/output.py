"""
What oauthctl prints: aligned tables (an entity's fields named and shown as
its description in L{oauthd.control.wire} says), times, durations and sizes
for people, and JSON for programs.
"""

from __future__ import annotations

import argparse
import functools
import getpass as getpass_module
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from attrs import define, field

from twisted.protocols import amp

from oauthd.control import wire


@define
class Terminal:
    """
    Where a command reads and writes; replaced in tests.
    """

    stdin: IO[str] = field(factory=lambda: sys.stdin)
    stdout: IO[str] = field(factory=lambda: sys.stdout)
    stderr: IO[str] = field(factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(factory=lambda: os.environ)
    getpass: Callable[[str], str] = getpass_module.getpass
    clock: Callable[[], float] = time.time

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")


def emit(args: argparse.Namespace, term: Terminal, data: object, human: Callable[[], str]) -> None:
    """
    Print C{data} as JSON with C{--json}, else what C{human} makes of it. A
    list is printed one compact row a line (the indenting encoder is pure
    Python and would take seconds over 100,000 rows).
    """
    if not args.json:
        term.print(human())
    elif isinstance(data, list):
        encode = json.JSONEncoder(ensure_ascii=False).encode
        term.print("[\n" + ",\n".join(encode(row) for row in data) + "\n]" if data else "[]")
    else:
        term.print(json.dumps(data, indent=2, ensure_ascii=False))


@functools.lru_cache(maxsize=4096)
def utc(timestamp: int) -> str:
    """
    A time for tables: UTC, to the second; C{never} for 0.
    """
    if not timestamp:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def duration(seconds: float) -> str:
    """
    C{3d4h}, C{1h30m}, C{45s}: the two largest units.
    """
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """
    Columns aligned on the widest cell, two spaces apart.
    """
    cells = [[str(c) for c in headers]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def cell(value: object) -> str:
    """
    A value as table text: anything unprintable (a terminal escape in a
    name) shown as C{?}.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def fields_table(pairs: Sequence[tuple[str, object]]) -> str:
    return table(["Name", "Value"], pairs)


def boxed(headers: Sequence[str], row: Sequence[str]) -> str:
    """
    A bordered one-row table, as PhotoPrism prints a secret.
    """
    widths = [max(len(h), len(c)) for h, c in zip(headers, row)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths)) + "|"

    return "\n".join([rule, line(headers), rule, line(row), rule])


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


KIND_NAMES = {
    "access": "Access Token",
    "app": "App Password",
    "refresh": "Refresh Token",
    "refresh-used": "Refresh Token (used)",
    "session": "Session",
}


def kind_name(row: Mapping[str, Any]) -> str:
    if row["kind"] == "access" and row["client_id"]:
        return "Client (OAuth2)"
    kind: str = row["kind"]
    return KIND_NAMES.get(kind, kind)


def client_lifetime(row: Mapping[str, Any]) -> str:
    limit = "no token limit" if row["max_tokens"] < 0 else f"up to {row['max_tokens']} tokens"
    return f"{duration(row['access_ttl'])}; {limit}"


SHOWN: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "access_ttl": client_lifetime,
    "refresh_ttl": lambda row: duration(row["refresh_ttl"]),
    "created_at": lambda row: utc(row["created_at"]),
    "issued_at": lambda row: utc(row["issued_at"]),
    "expires_at": lambda row: utc(row["expires_at"]),
    "disabled": lambda row: yes_no(not row["disabled"]),
    "has_password": lambda row: "set" if row["has_password"] else "none",
    "kind": kind_name,
}
"""
How tables show the fields that are not shown as they are (a list as
words, a boolean as yes or no).
"""


def shown(field: wire.Field, row: Mapping[str, Any]) -> object:
    """
    C{row}'s C{field} as a table shows it.
    """
    special = SHOWN.get(field.name)
    if special is not None:
        return special(row)
    value = row[field.name]
    if isinstance(field.argument, amp.ListOf):
        return " ".join(value)
    if isinstance(field.argument, amp.Boolean):
        return yes_no(value)
    return value


def detail(entity: wire.Entity, row: Mapping[str, Any]) -> list[tuple[str, object]]:
    """
    One client, user or token as the name and value of each field its
    description shows.
    """
    return [(entity[name].label, shown(entity[name], row)) for name in entity.detail]


def listing(entity: wire.Entity, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """
    Rows as a table of the fields C{names}.
    """
    fields = [entity[name] for name in names]
    return table([field.label for field in fields], [[shown(f, row) for f in fields] for row in rows])
