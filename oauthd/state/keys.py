"""
The signing keys of ID tokens and JWT access tokens: their records and the
table L{oauthd.state.model.State} holds, C{keys}.

    key   {kid, alg, created, signs_from, jwk}   KeyAdded        a key published
    key~  kid signed_until                       KeySignedUntil  tokens it signed expire by then

A key's record holds its private JWK: the journal is the only place it is
written (the journal is 0600). Nothing else prints it: the record's and the
key's reprs leave it out, and the control socket and the JWKS are given only
public parts.

A key's state is not written down but follows from the clock and the keys
of its algorithm added after it (L{Keys.state}):

  - I{next} from its publication until C{signs_from}: in the JWKS, not
    signing, so relying parties that cache the JWKS see it first;
  - I{signing} from C{signs_from} until a key of its algorithm added later
    starts signing (it is then I{superseded});
  - I{retired} from then until every token it signed has expired: in the
    JWKS, verifying, not signing;
  - then it leaves: out of the JWKS, refused by verification, dropped by
    compaction.

When its tokens expire is kept per key as a high-water mark,
C{signed_until}: signing a token that expires after the mark moves the mark
a step past it in memory at once (L{Keys.reserve}), and a C{key~} record of
the new mark is committed soon after, so there is at most one record per key
per L{RESERVE_STEP} for tokens of a steady lifetime, not one per token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from attrs import field, frozen

KEY_TAG = "key"
MARK_TAG = "key~"

RESERVE_STEP = 3600
"""
How far past a signed token's expiry the mark is moved: the trade between
records written and how long a retired key outstays its last token.
"""

NEXT, SIGNING, RETIRED, GONE = "next", "signing", "retired", "gone"


@frozen
class SigningKey:
    """
    One signing key.

    @ivar kid: its key id, the RFC 7638 thumbprint of its public key.
    @ivar alg: the JWS algorithm it signs with (C{RS256}, C{ES256}, C{EdDSA}).
    @ivar created: when it was made.
    @ivar signs_from: when it starts signing.
    @ivar jwk: the private key, a JWK as a dict (never in the repr).
    """

    kid: str
    alg: str
    created: int
    signs_from: int
    jwk: dict[str, Any] = field(repr=False, eq=False)


@frozen
class KeyAdded:
    key: SigningKey


@frozen
class KeySignedUntil:
    kid: str
    signed_until: int


KeyRecord = KeyAdded | KeySignedUntil
KEY_TYPES = (KeyAdded, KeySignedUntil)


def encode(record: KeyRecord) -> str:
    match record:
        case KeyAdded(key=k):
            fields = {"kid": k.kid, "alg": k.alg, "created": k.created, "signs_from": k.signs_from,
                      "jwk": k.jwk}
            return KEY_TAG + "\t" + json.dumps(fields, separators=(",", ":"), sort_keys=True)
        case KeySignedUntil(kid=kid, signed_until=until):
            if "\t" in kid:
                raise ValueError("record fields may not contain a tab")
            return f"{MARK_TAG}\t{kid}\t{until}"


def decode(fields: list[str]) -> KeyRecord:
    """
    The key record of a payload's tab-separated C{fields}.

    @raise ValueError: if it is malformed (the message never quotes the key).
    """
    tag = fields[0]
    try:
        if tag == KEY_TAG and len(fields) == 2:
            value = json.loads(fields[1])
            kid, alg, jwk = value["kid"], value["alg"], value["jwk"]
            created, signs_from = value["created"], value["signs_from"]
            if not (isinstance(kid, str) and isinstance(alg, str) and isinstance(jwk, dict)
                    and type(created) is int and type(signs_from) is int):
                raise TypeError("a field has the wrong type")
            return KeyAdded(SigningKey(kid, alg, created, signs_from, jwk))
        if tag == MARK_TAG and len(fields) == 3:
            return KeySignedUntil(fields[1], int(fields[2]))
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"malformed {tag} record: {type(e).__name__}") from None
    raise ValueError(f"malformed {tag} record: it has {len(fields)} fields")


DECODERS = frozenset({KEY_TAG, MARK_TAG})


class Keys:
    """
    The signing keys in memory, in the order they were added.
    """

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._marks: dict[str, int] = {}  # committed signed_until, by kid
        self._reserved: dict[str, int] = {}  # reserved in memory, not yet committed
        # Imported key objects, by kid: importing a private key is slow.
        self.cache: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<Keys {list(self._keys)}>"

    def apply(self, record: object) -> None:
        match record:
            case KeyAdded(key=key):
                self._keys.setdefault(key.kid, key)
            case KeySignedUntil(kid=kid, signed_until=until):
                if kid in self._keys and until > self._marks.get(kid, 0):
                    self._marks[kid] = until

    def all(self) -> list[SigningKey]:
        return list(self._keys.values())

    def get(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    def signed_until(self, kid: str) -> int:
        """
        When every token C{kid} has signed has expired, as far as known.
        """
        return max(self._marks.get(kid, 0), self._reserved.get(kid, 0))

    def superseded_at(self, key: SigningKey) -> int | None:
        """
        When a key of C{key}'s algorithm added after it starts signing.
        """
        later = False
        times = []
        for other in self._keys.values():
            if other is key:
                later = True
            elif later and other.alg == key.alg:
                times.append(other.signs_from)
        return min(times) if times else None

    def leaves_at(self, key: SigningKey) -> int | None:
        """
        When C{key} leaves the JWKS: once superseded and every token it
        signed has expired; C{None} while it is not superseded.
        """
        superseded = self.superseded_at(key)
        if superseded is None:
            return None
        return max(superseded, self.signed_until(key.kid))

    def state(self, key: SigningKey, now: float) -> str:
        superseded = self.superseded_at(key)
        if superseded is not None and now >= superseded:
            leaves = self.leaves_at(key)
            return GONE if leaves is not None and now >= leaves else RETIRED
        return SIGNING if now >= key.signs_from else NEXT

    def published(self, now: float) -> list[SigningKey]:
        """
        The keys in the JWKS: next, signing and retired ones.
        """
        return [key for key in self._keys.values() if self.state(key, now) != GONE]

    def signing(self, alg: str, now: float) -> SigningKey | None:
        """
        The key that signs with C{alg} now, if there is one.
        """
        current = None
        for key in self._keys.values():
            if key.alg == alg and key.signs_from <= now:
                current = key
        return current

    def reserve(self, kid: str, expires_at: int) -> None:
        """
        Note that C{kid} signed a token expiring at C{expires_at}: if that
        passes its mark, move the mark in memory a step past it, for
        L{pending} to commit.
        """
        if expires_at > self.signed_until(kid):
            self._reserved[kid] = expires_at + RESERVE_STEP

    def pending(self) -> list[KeySignedUntil]:
        """
        The marks reserved in memory and not yet committed.
        """
        return [KeySignedUntil(kid, until) for kid, until in self._reserved.items()
                if until > self._marks.get(kid, 0)]

    def snapshot(self, now: float) -> Iterator[str]:
        """
        Payloads that rebuild the table: every key that has not left, with
        its mark.
        """
        for key in self.published(now):
            yield encode(KeyAdded(key))
            if key.kid in self._marks:
                yield encode(KeySignedUntil(key.kid, self._marks[key.kid]))
