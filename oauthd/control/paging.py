"""
Paged listings: the first page of a listing fixes which items it covers
(those that exist then); each page turns the next run of their keys into
rows, as the items are then, up to a page's rows, bytes and scan limits; a
cursor names where the next page starts. A token listing copies no keys:
tokens are read from the state's numbered issue order (L{TakenOrder}), from
the number the cursor names. Client and user listings still copy their keys
(users sorted by name) at their first page: both are made by an admin, and
their number is small next to the tokens'. C{docs/control.md} says what a
client sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from attrs import define

from oauthd.control.wire import MAX_LISTINGS, PAGE_BYTES, PAGE_ROWS, SCAN_LIMIT
from oauthd.protocol.errors import InvalidValue
from oauthd.state.order import TakenOrder


class Keys(Protocol):
    """
    The keys a listing covers, each under a number, in order; C{stop}: the
    number after the last.
    """

    @property
    def stop(self) -> int: ...

    def run(self, start: int, count: int) -> tuple[Sequence[Any], Sequence[int]]:
        """
        Up to C{count} keys numbered from C{start} (before C{stop}), and
        their numbers.
        """


@define
class Copied:
    """
    A few keys, copied (clients, users: a copy of each is small beside the
    items).
    """

    keys: list[Any]

    @property
    def stop(self) -> int:
        return len(self.keys)

    def run(self, start: int, count: int) -> tuple[Sequence[Any], Sequence[int]]:
        keys = self.keys[start:start + count]
        return keys, range(start, start + len(keys))


@define
class Taken:
    """
    The tokens the state held when the listing started, read from its issue
    order as the pages go (those taken in since are numbered past C{stop}).
    """

    order: TakenOrder
    stop: int

    def run(self, start: int, count: int) -> tuple[Sequence[Any], Sequence[int]]:
        return self.order.run(start, self.stop, count)


@define
class Listing:
    """
    One paged listing on one connection: the keys it covers, and how to turn
    a run of keys into rows (C{None} for an item that has since gone or does
    not match the listing's filter).
    """

    command: bytes
    keys: Keys
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
            listing_number = self._next
            self._next += 1
            listing = start()
            self._open[listing_number] = listing
            while len(self._open) > MAX_LISTINGS:
                del self._open[min(self._open)]
            position = 0
        else:
            listing_number, position = parse_cursor(cursor)
            found = self._open.get(listing_number)
            if found is None or found.command != command or position > found.keys.stop:
                raise InvalidValue("unknown or expired cursor; start the listing again")
            listing = found
        rows: list[str] = []
        size = 2
        keys = listing.keys
        scanned = 0
        full = False
        while not full and scanned < SCAN_LIMIT:
            wanted = min(CHUNK, SCAN_LIMIT - scanned)
            chunk, numbers = keys.run(position, wanted)
            scanned += len(chunk)
            for number, row in zip(numbers, listing.rows(list(chunk))):
                if row is not None:
                    text = _json(row)
                    if len(text) + 1 > PAGE_BYTES - 2 and row.get("redirect_uris"):
                        # Only a client with very many long redirect URIs can
                        # outgrow a page; list it without them (show has them).
                        row["redirect_uris"] = []
                        row["post_logout_redirect_uris"] = []
                        text = _json(row)
                    if size + len(text) + 1 > PAGE_BYTES and rows:
                        full = True
                        break
                    rows.append(text)
                    size += len(text) + 1
                position = number + 1
                if len(rows) >= rows_wanted:
                    full = True
                    break
            if len(chunk) < wanted and not full:
                # Nothing is left before stop.
                position = keys.stop
                break
        page = "[" + ",".join(rows) + "]"
        if position >= keys.stop:
            del self._open[listing_number]
            return {"rows": page, "cursor": ""}
        return {"rows": page, "cursor": f"{listing_number}.{position}"}


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
