"""
Rate-limit failures shared between the nodes of a shared log: each node
gathers the failures it charged (a rule's name and a keyed digest of the
key, never the key) for L{EVERY} seconds and sends them in one PostgreSQL
notification; every other node charges them too.  Nothing is stored: a
notification missed (a node restarting, PostgreSQL down) only forgives
those failures, as a restart does on one node.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["EVERY", "FailureShare", "key_digest"]

EVERY = 0.1
"""
Seconds a node gathers its failures before it sends them.
"""

MAX_PAYLOAD = 7000
"""
Bytes of one notification's payload (PostgreSQL takes under 8000).
"""

MAX_COUNT = 1000
"""
The most failures one line of a payload may charge (more are ignored).
"""


def key_digest(secret: bytes) -> Callable[[str], str]:
    """
    The digest the nodes keep rate-limit buckets by, under a key derived
    from C{secret} (the nodes' C{eventlog_secret_key_file}), so that what
    travels through PostgreSQL does not give away an address or a name.
    """
    derived = hmac.new(secret, b"oauthd rate limit keys v1", hashlib.sha256).digest()
    return lambda key: hmac.new(derived, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class FailureShare:
    """
    This node's failures, gathered and sent; the other nodes', read.

    @param send: sends one payload to the other nodes.
    """

    def __init__(self, node: str, clock: IReactorTime, send: Callable[[str], object]) -> None:
        self._node = node
        self._clock = clock
        self._send = send
        self._gathered: Counter[tuple[str, str]] = Counter()
        self._call: IDelayedCall | None = None

    def add(self, rule: str, digest: str) -> None:
        """
        Note a failure this node charged, sent within L{EVERY} seconds.
        """
        self._gathered[rule, digest] += 1
        if self._call is None:
            self._call = self._clock.callLater(EVERY, self.flush)

    def flush(self) -> None:
        """
        Send what was gathered, in as few payloads as fit.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        gathered, self._gathered = self._gathered, Counter()
        head = self._node + "\n"
        lines: list[str] = []
        size = len(head)
        for (rule, digest), count in sorted(gathered.items()):
            # Past MAX_COUNT (far past any limit) the others ignore a line.
            line = f"{rule} {digest} {min(count, MAX_COUNT)}"
            if lines and size + len(line) + 1 > MAX_PAYLOAD:
                self._send(head + "\n".join(lines))
                lines, size = [], len(head)
            lines.append(line)
            size += len(line) + 1
        if lines:
            self._send(head + "\n".join(lines))

    def read(self, payload: str) -> Iterator[tuple[str, str, int]]:
        """
        The failures (rule, digest, count) another node sent in C{payload};
        none of this node's own, nor of a malformed line.
        """
        node, _, body = payload.partition("\n")
        if node == self._node:
            return
        for line in body.split("\n"):
            fields = line.split(" ")
            if len(fields) == 3 and fields[2].isdigit() and 0 < int(fields[2]) <= MAX_COUNT:
                yield fields[0], fields[1], int(fields[2])

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
