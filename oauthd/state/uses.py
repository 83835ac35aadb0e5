"""
The registrations each limited initial access token (C{oauthctl auth add
--scope register --uses N}) has left, in the in-memory state.
L{oauthd.state.model.State} holds the table, C{uses}, by token key.

As for every record, applying one is idempotent and one naming a token the
state does not hold does nothing.
"""

from __future__ import annotations

from collections.abc import Container, Iterator

from oauthd.state.records import Record, TokenUses, encode


class Uses:
    """
    Registrations left, by the key of their initial access token. A token
    absent from it is not limited.
    """

    def __init__(self) -> None:
        self._left: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._left)

    def left(self, key: int) -> int | None:
        return self._left.get(key)

    def apply(self, record: Record, tokens: Container[int]) -> None:
        if not isinstance(record, TokenUses) or record.key not in tokens:
            return
        # Never more than recorded before: a record replayed twice, or a
        # snapshot's after a later journal's, cannot give uses back.
        held = self._left.get(record.key, record.remaining)
        remaining = min(held, record.remaining)
        if remaining:
            self._left[record.key] = remaining
        else:
            self._left.pop(record.key, None)

    def snapshot(self, tokens: Container[int]) -> Iterator[bytes]:
        """
        Payloads that rebuild the table, for the tokens still held (written
        after them); the entries of revoked tokens are dropped meanwhile.
        """
        for key, remaining in list(self._left.items()):
            if key in tokens:
                yield encode(TokenUses(key, remaining))
            else:
                self._left.pop(key, None)
