"""
How the state holds a token (L{oauthd.state.model}): a L{Token}, or a C{tok}
record's payload, read into a L{Token} when it is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from oauthd.state.entities import Token
from oauthd.state.records import parse_token as _parse_payload

Row = Token | bytes
"""
How the state holds a token: a L{Token}, or a C{tok} record's payload.
"""


def parse_token(row: Row) -> Token:
    """
    The token in a row. A payload was checked when the state took it in
    (L{State.load}).
    """
    if type(row) is Token:
        return row
    assert isinstance(row, bytes)
    return _parse_payload(row)


class TokenTable(Mapping[int, Token]):
    """
    A read-only view of the state's tokens by key, building each L{Token}
    from its record when it is read.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[int, Row]) -> None:
        self._rows = rows

    def __getitem__(self, key: int) -> Token:
        return parse_token(self._rows[key])

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def row_expiry(row: Row) -> int:
    """
    When the token in a row expires; 0 for never. (A payload's expiry without
    a whole parse: the sweep reads a million of them after a replay.)
    """
    if type(row) is Token:
        return row.expires_at
    assert isinstance(row, bytes)
    fields = row.split(b"\t", 8)
    try:
        lifetime = int(fields[7])
        return int(fields[6]) + lifetime if lifetime else 0
    except ValueError:
        # Digits other than ASCII ones, which int() takes only from text.
        return parse_token(row).expires_at


def live_row(row: Row, now: float) -> bool:
    expires_at = row_expiry(row)
    return not expires_at or now < expires_at
