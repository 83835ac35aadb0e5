"""
What the state holds: clients, users, their second factors and tokens, and
the names a token goes by (its lookup key and its short public handle).
"""

from __future__ import annotations

import string

from attrs import frozen

ACCESS = "access"
REFRESH = "refresh"
USED_REFRESH = "refresh-used"
APP_PASSWORD = "app"
SESSION = "session"
KINDS = frozenset({ACCESS, REFRESH, USED_REFRESH, APP_PASSWORD, SESSION})

CONFIDENTIAL = "confidential"
PUBLIC = "public"

BASE36 = string.digits + string.ascii_lowercase

_DIGIT_PAIRS = [high + low for high in BASE36 for low in BASE36]

HANDLE_SHIFT = 77
"""
A handle spells the top 51 bits of a token's 128-bit key.
"""


def key_hex(key: int) -> str:
    """
    A token key as it is written in records: 32 hex digits.
    """
    # Its 16 bytes' hex: a fraction of what formatting the number costs, on
    # every record a token request writes. (A key no digest gives, read from
    # a journal written by hand, is written back as it was read.)
    try:
        return key.to_bytes(16, "big").hex()
    except OverflowError:
        return f"{key:032x}"


def handle(key: int) -> str:
    """
    A token's short public name for logs and listings (PhotoPrism's RefID
    shape: C{sess} and 10 base36 characters, 51 bits of the digest).
    """
    # Two digits a step (the top 51 bits fit in ten base36 digits): every
    # issue and revocation names its token in the audit trail.
    value = key >> HANDLE_SHIFT
    pairs = []
    for _ in range(5):
        value, pair = divmod(value, 1296)
        pairs.append(_DIGIT_PAIRS[pair])
    return "sess" + "".join(reversed(pairs))


def is_handle(value: str) -> bool:
    return len(value) == 14 and value.startswith("sess") and all(c in BASE36 for c in value[4:])


def handle_prefix(value: str) -> int | None:
    """
    The key bits a handle names (C{key >> HANDLE_SHIFT}), or C{None} if
    C{value} is not a handle.
    """
    if not is_handle(value):
        return None
    return int(value[4:], 36)


@frozen
class Client:
    """
    An OAuth client.

    @ivar secret_digest: the SHA-256 hex digest of the secret, C{""} for a
        public client.
    @ivar max_tokens: the most live access tokens at once; issuing one more
        revokes the oldest. -1 means no limit.
    @ivar user: the owning user's name, C{""} if none.
    @ivar introspect: the client is a resource server: it may introspect
        tokens (RFC 7662).
    @ivar pkce: C{"required"}, or C{"optional"} for a confidential client
        exempted from PKCE at the authorization endpoint.
    @ivar jwt_access_tokens: its access tokens are signed JWTs (RFC 9068)
        rather than opaque PhotoPrism-format tokens.
    @ivar audience: the C{aud} of its JWT access tokens; none: the issuer.
    @ivar id_token_signed_response_alg: how its ID tokens are signed,
        C{""} for the server's default.
    @ivar id_token_claims: its ID tokens carry the claims of the granted
        C{profile}, C{email} and C{address} scopes, not only userinfo.
    @ivar post_logout_redirect_uris: where RP-initiated logout may send the
        browser back to (OpenID Connect RP-Initiated Logout 1.0).
    @ivar registration_digest: the SHA-256 hex digest of its registration
        access token (RFC 7592) if it registered itself, else C{""}.
    @ivar registration_metadata: the metadata it registered that only the
        registration endpoint reads (contacts, URIs, software), as JSON.
    """

    id: str
    name: str
    secret_digest: str = ""
    type: str = CONFIDENTIAL
    grant_types: tuple[str, ...] = ("client_credentials",)
    scope: str = "*"
    access_ttl: int = 3600
    refresh_ttl: int = 30 * 86400
    max_tokens: int = 10
    redirect_uris: tuple[str, ...] = ()
    enabled: bool = True
    user: str = ""
    role: str = "client"
    created_at: int = 0
    introspect: bool = False
    pkce: str = "required"
    jwt_access_tokens: bool = False
    audience: tuple[str, ...] = ()
    id_token_signed_response_alg: str = ""
    id_token_claims: bool = False
    post_logout_redirect_uris: tuple[str, ...] = ()
    registration_digest: str = ""
    registration_metadata: str = ""

    @property
    def public(self) -> bool:
        return self.type == PUBLIC


@frozen
class User:
    """
    A person who can log in.

    @ivar password_hash: bcrypt hash, C{""} if the user has no password.
    @ivar uid: the stable subject id (PhotoPrism's UID shape: C{u} and 15
        base36 characters), given once and never changed; C{""} only in a
        journal from before subject ids, until the first start gives one.
    @ivar updated_at: when the profile (name, email, address) last changed,
        0 if never.
    """

    name: str
    password_hash: str = ""
    role: str = "user"
    disabled: bool = False
    full_name: str = ""
    email: str = ""
    created_at: int = 0
    uid: str = ""
    email_verified: bool = False
    address: str = ""
    updated_at: int = 0


TOTP_PERIOD = 30
"""
Seconds in one TOTP time step (RFC 6238's default, what authenticator apps
use).
"""


@frozen(repr=False)
class SecondFactor:
    """
    A user's TOTP enrollment (RFC 6238).

    @ivar secret: the shared TOTP secret, base32 as the authenticator app
        holds it. It must be kept to check a code, so it is held here and in
        the journal (0600) only: never logged, audited, listed or shown in a
        repr; the enable reply gives it once.
    @ivar recovery: the SHA-256 hex digests of the recovery codes not used
        yet.
    @ivar enabled_at: when it was turned on.
    @ivar last_step: the latest TOTP time step a code was accepted for (0 for
        none): codes of it and every earlier step are refused.
    """

    user: str
    secret: str
    recovery: frozenset[str]
    enabled_at: int
    last_step: int = 0

    def __repr__(self) -> str:
        return f"<SecondFactor user={self.user!r} recovery_codes_left={len(self.recovery)}>"


class Token:
    """
    One issued credential. (A plain class, not attrs: replayed tokens are
    built from their records on every read.)

    @ivar key: the lookup key: the first 128 bits of the secret's SHA-256
        digest, as an int.
    @ivar lifetime: seconds from C{issued_at}; 0 means it never expires.
    @ivar grant: the grant (refresh family) id, C{""} for none.
    @ivar label: the name given to an app password or admin-issued token.
    """

    __slots__ = (
        "key", "kind", "client_id", "user", "scope", "issued_at", "lifetime", "grant", "label",
    )

    def __init__(
        self, key: int, kind: str, client_id: str, user: str, scope: str,
        issued_at: int, lifetime: int, grant: str, label: str,
    ) -> None:
        self.key = key
        self.kind = kind
        self.client_id = client_id
        self.user = user
        self.scope = scope
        self.issued_at = issued_at
        self.lifetime = lifetime
        self.grant = grant
        self.label = label

    def __repr__(self) -> str:
        return f"<Token {self.handle} {self.kind} client={self.client_id!r} user={self.user!r}>"

    @property
    def expires_at(self) -> int:
        """
        The first second at which the token is invalid; 0 for never.
        """
        return self.issued_at + self.lifetime if self.lifetime else 0

    def live(self, now: float) -> bool:
        return self.lifetime == 0 or now < self.issued_at + self.lifetime

    @property
    def handle(self) -> str:
        return handle(self.key)

    @property
    def own(self) -> bool:
        """
        Whether this is a client's own access token (no user grant): what a
        client's token limit counts.
        """
        return self.kind == ACCESS and not self.grant
