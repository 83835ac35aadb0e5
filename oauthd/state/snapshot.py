"""
A snapshot of the state: the payloads compaction writes in place of the
journal, which rebuild the live state when replayed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from oauthd.state import second_factor
from oauthd.state.records import ClientPut, Record, TokenIssued, UserPut, encode
from oauthd.state.rows import Row, live_row, parse_token

if TYPE_CHECKING:
    from oauthd.state.model import State


def snapshot_payloads(state: State, rows: Mapping[int, Row], now: float) -> Iterator[bytes]:
    """
    Payloads that rebuild the live state: every client and user, every
    token not revoked or expired, and every live refresh family and its used
    keys.  The tokens and the families are read at the call, the rest as
    they come: compaction writes the payloads a slice at a time while state
    changes, then replays what was appended after the call; and a node of a
    shared log that starts from them admits the records after the call by
    the tokens and families it holds (a token revoked meanwhile, missing
    here, would make room for one the running nodes refused).

    The families come last: a refresh token used after it was written as a
    token is written again as used, whereas one used after its family was
    written would be in neither part, and the C{used} record appended
    meanwhile would find no token to mark.
    """
    return _payloads(state, list(rows.values()), rows, state.families.snapshot(now), now)


def _payloads(state: State, held: list[Row], rows: Mapping[int, Row], families: Iterator[Record],
              now: float) -> Iterator[bytes]:
    for client in list(state.clients.values()):
        yield encode(ClientPut(client))
    for user in list(state.users.values()):
        yield encode(UserPut(user))
    yield from second_factor.snapshot(state.second_factors, now)
    yield from state.authz.snapshot(now)
    yield from (payload.encode("utf-8") for payload in state.keys.snapshot(now))
    yield from (payload.encode("utf-8") for payload in state.audit_anchor.snapshot())
    for row in held:
        if live_row(row, now):
            yield row if type(row) is bytes else encode(TokenIssued(parse_token(row)))
    yield from state.uses.snapshot(_LiveKeys(rows, now))
    for record in families:
        yield encode(record)


class _LiveKeys:
    """
    The keys of the tokens live at C{now}: an entry of one expired but not
    yet swept is not in a snapshot (nor in the state digest over it).
    """

    def __init__(self, rows: Mapping[int, Row], now: float) -> None:
        self._rows, self._now = rows, now

    def __contains__(self, key: object) -> bool:
        row = self._rows.get(key) if isinstance(key, int) else None
        return row is not None and live_row(row, self._now)
