"""
Token keys in the order the state took them in, each under a number that
never changes, so that a listing can page through them from a number
without a copy of every key (L{oauthd.control.paging}).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Container


class TakenOrder:
    """
    The keys the state has taken in, oldest first, numbered 0, 1, 2, ... in
    that order. A removed key stays (and is skipped by the reader, who
    checks the rows) until half of them are removed; then they are pruned
    and the others keep their numbers.
    """

    __slots__ = ("_rows", "_keys", "_numbers", "_next", "_removed")

    def __init__(self, rows: Container[int]) -> None:
        self._rows = rows
        self._keys: list[int] = []
        # The number of each key in _keys; an array: a list of ints would
        # cost a Python object per token.
        self._numbers = array("q")
        self._next = 0
        self._removed = 0

    def __len__(self) -> int:
        """
        How many keys are held, removed ones not yet pruned included.
        """
        return len(self._keys)

    @property
    def end(self) -> int:
        """
        The number the next key taken in will get.
        """
        return self._next

    def add(self, key: int) -> None:
        self._keys.append(key)
        self._numbers.append(self._next)
        self._next += 1

    def removed(self) -> None:
        """
        A key was removed from the rows.
        """
        self._removed += 1
        if self._removed * 2 >= len(self._keys):
            rows = self._rows
            kept = [i for i, key in enumerate(self._keys) if key in rows]
            self._keys = [self._keys[i] for i in kept]
            self._numbers = array("q", (self._numbers[i] for i in kept))
            self._removed = 0

    def run(self, start: int, stop: int, count: int) -> tuple[list[int], list[int]]:
        """
        Up to C{count} keys numbered from C{start} up to C{stop} (some
        perhaps removed since), and their numbers.
        """
        first = bisect_left(self._numbers, start)
        last = min(first + count, bisect_left(self._numbers, stop, first))
        return self._keys[first:last], self._numbers[first:last].tolist()
