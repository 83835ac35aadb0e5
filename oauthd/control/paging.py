"""
Paged listings: the first page of a listing takes a snapshot of keys; each
page turns the next run of them into rows, as the items are then, up to a
page's rows, bytes and scan limits; a cursor names where the next page
starts. C{docs/control.md} says what a client sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import define

from oauthd.control.wire import MAX_LISTINGS, PAGE_BYTES, PAGE_ROWS, SCAN_LIMIT
from oauthd.protocol.errors import InvalidValue


@define
class Listing:
    """
    One paged listing on one connection: a snapshot of keys taken at its
    first page, and how to turn a run of keys into rows (C{None} for an item
    that has since gone or does not match the listing's filter).
    """

    command: bytes
    keys: list[Any]
    rows: Callable[[list[Any]], list[dict[str, Any] | None]]


CHUNK = 256
"""
Keys turned into rows at a time while filling a page.
"""


class Listings:
    """
    The listings one connection has open (at most L{MAX_LISTINGS}), by
    number.
    """

    def __init__(self) -> None:
        self._open: dict[int, Listing] = {}
        self._next = 1

    def clear(self) -> None:
        self._open.clear()

    def page(
        self, command: bytes, cursor: str | None, limit: int | None,
        start: Callable[[], Listing],
    ) -> dict[str, object]:
        """
        One page of a listing: the first (a new snapshot) without a cursor,
        else the one the cursor names.

        @return: the page's response: its rows as JSON, and the cursor of
            the next page, C{""} after the last.
        """
        rows_wanted = page_limit(limit)
        if not cursor:
            number = self._next
            self._next += 1
            listing = start()
            self._open[number] = listing
            while len(self._open) > MAX_LISTINGS:
                del self._open[min(self._open)]
            position = 0
        else:
            number, position = parse_cursor(cursor)
            found = self._open.get(number)
            if found is None or found.command != command or position > len(found.keys):
                raise InvalidValue("unknown or expired cursor; start the listing again")
            listing = found
        rows: list[str] = []
        size = 2
        keys = listing.keys
        end = min(len(keys), position + SCAN_LIMIT)
        full = False
        while position < end and not full:
            chunk = keys[position:min(end, position + CHUNK)]
            for row in listing.rows(chunk):
                if row is not None:
                    text = _json(row)
                    if len(text) + 1 > PAGE_BYTES - 2 and row.get("redirect_uris"):
                        # Only a client with very many long redirect URIs can
                        # outgrow a page; list it without them (show has them).
                        row["redirect_uris"] = []
                        text = _json(row)
                    if size + len(text) + 1 > PAGE_BYTES and rows:
                        full = True
                        break
                    rows.append(text)
                    size += len(text) + 1
                position += 1
                if len(rows) >= rows_wanted:
                    full = True
                    break
        page = "[" + ",".join(rows) + "]"
        if position >= len(keys):
            del self._open[number]
            return {"rows": page, "cursor": ""}
        return {"rows": page, "cursor": f"{number}.{position}"}


def page_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_ROWS
    if not 1 <= limit <= PAGE_ROWS:
        raise InvalidValue(f"limit must be between 1 and {PAGE_ROWS}")
    return limit


def parse_cursor(cursor: str) -> tuple[int, int]:
    number, dot, position = cursor.partition(".")
    if not (dot and cursor.isascii() and number.isdigit() and position.isdigit() and len(cursor) < 40):
        raise InvalidValue("unknown or expired cursor; start the listing again")
    return int(number), int(position)


def each(
    row: Callable[[Any], dict[str, Any] | None],
) -> Callable[[list[Any]], list[dict[str, Any] | None]]:
    """
    Rows of a run of keys, one key at a time.
    """
    return lambda chunk: [row(key) for key in chunk]


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(row: dict[str, Any]) -> str:
    """
    A row as compact, ASCII-only JSON (so its length is its size in bytes).
    """
    text: str = _encode(row)
    return text
