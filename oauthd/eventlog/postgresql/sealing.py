"""
What the shared log keeps in PostgreSQL is sealed with a key only the nodes
hold (C{eventlog_secret_key_file}): every record's payload and every
snapshot chunk is encrypted and authenticated (AES-256-GCM, a random nonce
each), so the signing keys and TOTP secrets among them are never in the
database in the clear.  The hash chain is over what PostgreSQL stores, the
sealed bytes (PostgreSQL computes it and never sees a plaintext); the seal's
tag authenticates each payload, the chain their order.

The database keeps a digest of the key (an HMAC of a fixed text under it,
never the key), so a node given another key, or none, is refused at start
with one line rather than failing on the first record it reads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from oauthd.eventlog.errors import JournalError
from oauthd.eventlog.files import UnsafeFile, open_private

if TYPE_CHECKING:
    import psycopg

__all__ = ["KeyMismatch", "Sealer", "read_key_file"]

_SEALED = b"\x01"
_NONCE = 12
_CHECK = b"oauthd event log key check"
_PLAIN = "none"


class KeyMismatch(JournalError):
    """
    This node's secret key is not the one the shared log was written with.
    """


def read_key_file(path: str) -> bytes:
    """
    The 32-byte key in C{path}: 64 hexadecimal digits, in a regular file of
    the running user's that others cannot read (as the data directory's
    files).

    @raise JournalError: in one line, what is wrong and what to do.
    """
    where = f"eventlog_secret_key_file {path}"
    try:
        fd = open_private(path, os.O_RDONLY)
    except UnsafeFile as e:
        raise JournalError(f"{where}: {e}") from None
    except OSError as e:
        raise JournalError(f"{where}: cannot read it: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        text = f.read(200).strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise JournalError(f"{where}: expected 64 hexadecimal digits (make one with: openssl rand -hex 32)")
    return key


class Sealer:
    """
    Seals and opens what the log keeps, with C{key} (or passes it as it
    is, without one).
    """

    def __init__(self, key: bytes | None) -> None:
        self._aead: Any = None
        self._digest = _PLAIN
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(key)
            self._digest = hmac.new(key, _CHECK, hashlib.sha256).hexdigest()

    def seal(self, data: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(_NONCE)
        return _SEALED + nonce + bytes(self._aead.encrypt(nonce, data, _SEALED))

    def open(self, sealed: bytes, where: str) -> bytes:
        """
        @param where: names what is opened, in the error.
        @raise KeyMismatch: it does not open with this key.
        """
        if self._aead is None:
            return sealed
        from cryptography.exceptions import InvalidTag

        try:
            if sealed[:1] != _SEALED:
                raise InvalidTag()
            return bytes(self._aead.decrypt(sealed[1:1 + _NONCE], sealed[1 + _NONCE:], _SEALED))
        except InvalidTag:
            raise KeyMismatch(f"{where} does not open with this node's eventlog_secret_key_file: it was"
                              " sealed with another key, or changed in the database") from None

    def check(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        """
        Record the key's digest in a new log; refuse a log written with
        another key (or without one, or with one when this node has none).

        @raise KeyMismatch: in one line, what to do.
        """
        connection.execute("INSERT INTO oauthd_settings (name, value) VALUES ('key', %s)"
                           " ON CONFLICT DO NOTHING", (self._digest,))
        row = connection.execute("SELECT value FROM oauthd_settings WHERE name = 'key'").fetchone()
        found = row[0] if row is not None else self._digest
        if found == self._digest:
            return
        if found == _PLAIN:
            why = "the event log was written without a secret key, and this node has one"
        elif self._digest == _PLAIN:
            why = "the event log is sealed with a secret key: set eventlog_secret_key_file to it"
        else:
            why = "this node's eventlog_secret_key_file is not the key the event log was written with"
        raise KeyMismatch(f"{why}: every node needs the same key file")
