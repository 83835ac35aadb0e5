"""
Token keys in the order the state took them in, each under a number that
never changes, so that a listing can page through them from a number
without a copy of every key (L{oauthd.control.paging}).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Container
from itertools import chain, compress


class TakenOrder:
    """
    The keys the state has taken in, oldest first, numbered 0, 1, 2, ... in
    that order. A removed key stays (and is skipped by the reader, who
    checks the rows) until half of them are removed (and the floor given);
    then they are pruned and the others keep their numbers.

    @ivar add: take in the next key: the list's own append, since replay
        calls it once per token.
    @ivar add_all: take in several keys, in order (the list's extend).
    """

    __slots__ = ("_rows", "_floor", "_keys", "_numbers", "_tail", "_removed", "add", "add_all")

    def __init__(self, rows: Container[int], floor: int = 0) -> None:
        """
        @param floor: prune only once at least this many keys are removed
            too: a state holding few tokens would otherwise prune every
            few removals, each time walking every key.
        """
        self._rows = rows
        self._floor = floor
        # Keys that survived a pruning keep their numbers in _numbers; the
        # keys after them are numbered on from _tail, one by one.
        self._keys: list[int] = []
        self._numbers = array("q")
        self._tail = 0
        self._removed = 0
        self.add = self._keys.append
        self.add_all = self._keys.extend

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
        return self._tail + len(self._keys) - len(self._numbers)

    def removed(self, count: int = 1) -> None:
        """
        A key was removed from the rows (or C{count} of them).
        """
        self._removed += count
        keys = self._keys
        if self._removed * 2 < len(keys) or self._removed < self._floor:
            return
        # Iterators and compress, not a loop in Python: a pruning of
        # millions of keys runs on the reactor.
        end = self.end
        kept = list(map(self._rows.__contains__, keys))
        numbered = chain(self._numbers, range(self._tail, end))
        self._numbers = array("q", compress(numbered, kept))
        self._tail = end
        # In place: self.add is this list's append.
        keys[:] = compress(keys, kept)
        self._removed = 0

    def run(self, start: int, stop: int, count: int) -> tuple[list[int], list[int]]:
        """
        Up to C{count} keys numbered from C{start} up to C{stop} (some
        perhaps removed since), and their numbers.
        """
        first = self._position(start)
        last = min(first + count, self._position(stop))
        return self._keys[first:last], [self._number(i) for i in range(first, last)]

    def _number(self, position: int) -> int:
        numbered = len(self._numbers)
        return self._numbers[position] if position < numbered else self._tail + position - numbered

    def _position(self, number: int) -> int:
        """
        Where the first key numbered C{number} or more is.
        """
        numbers = self._numbers
        if numbers and number <= numbers[-1]:
            return bisect_left(numbers, number)
        return min(len(self._keys), len(numbers) + max(0, number - self._tail))
