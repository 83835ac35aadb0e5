"""
Refusals, summed up: what keeps a stream of hostile requests (junk bearer
tokens, guessed client secrets) from costing the audit trail a line each.

Refusals are counted per kind (event, error, reason) and source (address or
uid) over a window of L{WINDOW} seconds. The first L{IN_FULL} of each key in
a window, and at most L{MAX_IN_FULL} in all, are written in full; the rest
are counted, and when the window closes one C{audit.summary} line per key
says how many were not written, with the key's fields and the window's
start. At most L{MAX_KEYS} keys are kept per window; refusals beyond them
are counted under one key whose fields are C{*}.
"""

from __future__ import annotations

from collections.abc import Mapping

WINDOW = 60.0
IN_FULL = 3
MAX_IN_FULL = 100
MAX_KEYS = 100

_KIND = ("error", "reason")
_SOURCE = ("ip", "peer_uid")

_Key = tuple[str, ...]


class RefusalSummary:
    """
    The counters of one window.
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self._seen: dict[_Key, int] = {}
        self._suppressed: dict[_Key, int] = {}
        self._in_full = 0

    def _key(self, event: str, fields: Mapping[str, str]) -> _Key:
        key = (event, *(fields.get(name, "") for name in _KIND + _SOURCE))
        if key not in self._seen and len(self._seen) >= MAX_KEYS:
            return (event, *("*" for _ in _KIND + _SOURCE))
        return key

    def admit(self, event: str, fields: Mapping[str, str]) -> bool:
        """
        Count a refusal; whether to write it in full.
        """
        key = self._key(event, fields)
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        if seen <= IN_FULL and self._in_full < MAX_IN_FULL:
            self._in_full += 1
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False

    def close(self) -> list[dict[str, str]]:
        """
        The fields of the window's C{audit.summary} lines: one per key with
        refusals not written in full.
        """
        lines = []
        for (event, *values), count in self._suppressed.items():
            fields = {"of": event, "count": str(count), "since": str(int(self.start))}
            fields.update((name, value) for name, value in zip(_KIND + _SOURCE, values) if value)
            lines.append(fields)
        return lines
