"""
oauthctl's helper, not a command for people (they run C{oauthctl migrate}):
L{oauthd.eventlog.migrate}, whose copy of a journal into a shared log also
claims what the nodes would have claimed had its records been appended
there (L{held_grant_claims}), and whose copy back keeps only the records
the nodes applied (L{kept}).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence

from oauthd.eventlog.migrate import main
from oauthd.interfaces import Claim
from oauthd.state.follower import held_grant_claims, kept_shared
from oauthd.state.model import State


class GrantSeeding:
    """
    The state of the records copied so far, and the claims of its grants.
    """

    def __init__(self, now: float) -> None:
        self._state = State()
        self._now = now

    def take(self, batch: Sequence[bytes]) -> None:
        self._state.load(batch, self._now)

    def claims(self) -> Sequence[Claim]:
        return held_grant_claims(self._state)


def kept(payloads: Iterator[bytes], snapshot_records: int) -> Iterator[bytes]:
    """
    The records of a shared log its nodes applied (L{kept_shared}).
    """
    return kept_shared(State(), payloads, snapshot_records, time.time())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], lambda: GrantSeeding(time.time()), kept))
