"""
The hash chain over a shared log's records: each record's hash covers the
previous record's hash, its position and its payload, so a node that
reconnects can tell, from one hash, whether the log it follows is still the
one it applied (a database restored from an older backup, or failed over to
a replica that lost the tail, rewinds or rewrites positions).

PostgreSQL computes the same chain in its append function
(L{oauthd.eventlog.postgresql}); both must agree byte for byte.
"""

from __future__ import annotations

import hashlib

__all__ = ["GENESIS", "link"]

GENESIS = bytes(32)
"""
The hash "before" position 1.
"""


def link(previous: bytes, position: int, payload: bytes) -> bytes:
    """
    The hash of the record at C{position}, after one whose hash is
    C{previous}: SHA-256 of the previous hash, the position as 8 big-endian
    bytes (PostgreSQL's C{int8send}) and the payload.
    """
    return hashlib.sha256(previous + position.to_bytes(8, "big", signed=True) + payload).digest()
