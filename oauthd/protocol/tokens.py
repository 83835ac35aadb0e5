"""
The formats of every secret and identifier oauthd hands out, PhotoPrism's where
PhotoPrism has one, and the digests they are stored and looked up by.

Only digests are kept: a token's lookup key is the first 128 bits of its
SHA-256 digest, as an int. A stolen journal then yields nothing usable: every
token carries at least 137 bits of entropy, so finding a preimage of a 128-bit
digest is out of reach, and 128 bits keep collisions among live tokens
negligible while saving memory per token (an int key is 48 bytes, a 32-byte
bytes object 72).
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import zlib
from collections.abc import Callable

from oauthd.state.entities import BASE36, HANDLE_SHIFT, handle, handle_prefix, is_handle, key_hex

__all__ = [
    "BASE36", "HANDLE_SHIFT", "handle", "handle_prefix", "is_handle", "key_hex",
    "new_access_token", "is_access_token", "new_app_password", "is_app_password",
    "new_client_id", "is_client_id", "new_client_secret", "new_grant_id", "session_id",
    "token_key", "key_and_session_id", "key_from_session_id", "secret_digest", "random_string", "RandomBytes",
]

RandomBytes = Callable[[int], bytes]
"""
A source of randomness, C{os.urandom} unless a test injects its own.
"""

BASE62 = string.digits + string.ascii_lowercase + string.ascii_uppercase
APP_PASSWORD_CHECK = string.ascii_lowercase + string.ascii_uppercase + string.digits
"""
The characters of an app password's check character, in PhotoPrism's order
(its C{checksum.CharsetBase62}), so each side accepts the other's.
"""
_LEGACY_APP_PASSWORD_CHECK = BASE62
"""
The order oauthd used before it matched PhotoPrism's: journals may still hold
app passwords minted with it, which must keep working.
"""
_HEX_DIGITS = re.compile("[0-9a-f]*")


def random_string(alphabet: str, length: int, random_bytes: RandomBytes = os.urandom) -> str:
    """
    C{length} characters drawn uniformly from C{alphabet} (rejection sampling,
    so no character is likelier than another).
    """
    limit = 256 - 256 % len(alphabet)
    out: list[str] = []
    while len(out) < length:
        for byte in random_bytes(length * 2):
            if byte < limit:
                out.append(alphabet[byte % len(alphabet)])
                if len(out) == length:
                    break
    return "".join(out)


def new_access_token(random_bytes: RandomBytes = os.urandom) -> str:
    """
    PhotoPrism's access token: 48 lowercase hex characters, 192 random bits.
    """
    return random_bytes(24).hex()


def is_access_token(value: str) -> bool:
    return len(value) == 48 and _HEX_DIGITS.fullmatch(value) is not None


def _app_password_check(first26: str, charset: str = APP_PASSWORD_CHECK) -> str:
    return charset[zlib.crc32(first26.encode("ascii")) % 62]


def new_app_password(random_bytes: RandomBytes = os.urandom) -> str:
    """
    PhotoPrism's app password, C{aaaaaa-aaaaaa-aaaaaa-aaaaac}: 23 random base62
    characters (about 137 bits) in dash-separated groups, and PhotoPrism's
    check character (its C{rnd.IsAppPassword(s, true)} accepts it), so a
    mistyped one is refused without a lookup.
    """
    raw = random_string(BASE62, 23, random_bytes)
    first26 = "-".join((raw[0:6], raw[6:12], raw[12:18], raw[18:23]))
    return first26 + _app_password_check(first26)


def is_app_password(value: str) -> bool:
    if len(value) != 27 or value[6] != "-" or value[13] != "-" or value[20] != "-":
        return False
    body = value[:6] + value[7:13] + value[14:20] + value[21:]
    if not all(c in BASE62 for c in body):
        return False
    first26 = value[:26]
    return value[26] == _app_password_check(first26) or value[26] == _app_password_check(
        first26, _LEGACY_APP_PASSWORD_CHECK
    )


def new_client_id(now: float, random_bytes: RandomBytes = os.urandom) -> str:
    """
    PhotoPrism's client UID: C{c}, the creation time in 6 base36 digits, and
    9 random base36 characters.
    """
    seconds = int(now)
    stamp = ""
    for _ in range(6):
        seconds, digit = divmod(seconds, 36)
        stamp = BASE36[digit] + stamp
    return "c" + stamp + random_string(BASE36, 9, random_bytes)


def is_client_id(value: str) -> bool:
    return len(value) == 16 and value[0] == "c" and all(c in BASE36 for c in value)


def new_client_secret(random_bytes: RandomBytes = os.urandom) -> str:
    """
    32 base62 characters, about 190 bits.
    """
    return random_string(BASE62, 32, random_bytes)


def new_grant_id(random_bytes: RandomBytes = os.urandom) -> str:
    """
    The identifier shared by every token descended from one authorization
    grant (a refresh-token family); not a secret.
    """
    return random_bytes(8).hex()


def _sha256(secret: str) -> "hashlib._Hash":
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass"))


def session_id(secret: str) -> str:
    """
    PhotoPrism's C{session_id}: the SHA-256 hex digest of the token.
    """
    return _sha256(secret).hexdigest()


def token_key(secret: str) -> int:
    """
    The lookup key of a token: the first 128 bits of its SHA-256 digest.
    """
    # (_sha256 inline: one call fewer for every token presented.)
    return int.from_bytes(hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()[:16], "big")


def key_and_session_id(secret: str) -> tuple[int, str]:
    """
    L{token_key} and L{session_id} of a new token, from one hash.
    """
    digest = _sha256(secret).digest()
    return int.from_bytes(digest[:16], "big"), digest.hex()


def key_from_session_id(value: str) -> int | None:
    """
    The lookup key named by a PhotoPrism session id (64 hex digits), or
    C{None} if C{value} is not one.
    """
    if len(value) != 64 or _HEX_DIGITS.fullmatch(value) is None:
        return None
    return int(value[:32], 16)


def secret_digest(secret: str) -> str:
    """
    How a client secret is stored: its SHA-256 hex digest.

    Client secrets are generated here with 190 bits of entropy, so a fast hash
    is as safe as a slow one: no dictionary applies, and a stolen digest
    cannot be reversed. A slow KDF (bcrypt, PBKDF2) on every token request is
    what makes Hydra's token endpoint 10-19 times slower than its
    introspection; the check here costs one SHA-256, like a token lookup.
    """
    return _sha256(secret).hexdigest()
