"""
A refresh token's rotation as one record (L{TokenRotated}): the refresh
token presented is used, the grant's oldest access tokens beyond the
client's limit are revoked, and a new access token and a new refresh token
of the same grant are issued. It does what these four kinds of record do
one after the other, which journals written before it hold instead::

    used    key                 RefreshUsed     the refresh token presented
    tok-    key (each)          TokenRevoked    access tokens beyond the limit
    tok     (the access token)  TokenIssued
    tok     (the refresh token) TokenIssued

and is written as one line (both new tokens share their client, user, time
of issue, grant and label)::

    rot  used revoked access client user access_scope issued_at access_lifetime
         grant label refresh refresh_scope refresh_lifetime

C{revoked} is the revoked keys separated by commas (empty for none); keys
are 32 hex digits, as in the token records.
"""

from __future__ import annotations

from oauthd.state.entities import ACCESS, REFRESH, Token, handle, key_hex

TAG = "rot"

_FIELDS = 14


class TokenRotated:
    """
    The refresh token with key C{used} is used, the tokens with the keys
    C{revoked} are revoked, then C{access} and C{refresh} are issued.
    (A plain class, as L{Token}: one is built on every refresh.)

    @raise ValueError: if C{access} and C{refresh} are not an access and a
        refresh token of one client, user, grant and label, issued at the
        same time (what the record's line holds once).
    """

    __slots__ = ("used", "revoked", "access", "refresh")

    def __init__(self, used: int, revoked: tuple[int, ...], access: Token, refresh: Token) -> None:
        if (access.kind != ACCESS or refresh.kind != REFRESH or access.client_id != refresh.client_id
                or access.user != refresh.user or access.issued_at != refresh.issued_at
                or access.grant != refresh.grant or access.label != refresh.label or not access.grant):
            raise ValueError("a rotation issues an access and a refresh token of one grant, at one time")
        self.used = used
        self.revoked = revoked
        self.access = access
        self.refresh = refresh

    def __repr__(self) -> str:
        return f"<TokenRotated {handle(self.used)} -> {self.access!r} {self.refresh!r} revoking {len(self.revoked)}>"


def encode(record: TokenRotated) -> str:
    """
    The payload text of C{record}.

    @raise ValueError: if a field contains a tab.
    """
    a, r = record.access, record.refresh
    revoked = record.revoked
    # (As a rotation most often revokes: one access token, or none.)
    listed = key_hex(revoked[0]) if len(revoked) == 1 else ",".join(map(key_hex, revoked))
    text = (
        f"rot\t{key_hex(record.used)}\t{listed}\t{key_hex(a.key)}\t"
        f"{a.client_id}\t{a.user}\t{a.scope}\t{a.issued_at}\t{a.lifetime}\t{a.grant}\t{a.label}\t"
        f"{key_hex(r.key)}\t{r.scope}\t{r.lifetime}"
    )
    if text.count("\t") != _FIELDS - 1:
        raise ValueError("record fields may not contain a tab")
    return text


def decode(fields: list[str]) -> TokenRotated:
    """
    The record in a C{rot} payload's fields.

    @raise ValueError: if they are malformed.
    """
    if len(fields) != _FIELDS:
        raise ValueError(f"malformed {TAG} record: it has {len(fields)} fields, not {_FIELDS}")
    (_, used, revoked, access, client_id, user, access_scope, issued_text, access_lifetime,
     grant, label, refresh, refresh_scope, refresh_lifetime) = fields
    try:
        issued_at = _whole(issued_text)
        return TokenRotated(
            int(used, 16), tuple(int(key, 16) for key in revoked.split(",")) if revoked else (),
            Token(int(access, 16), ACCESS, client_id, user, access_scope, issued_at, _whole(access_lifetime),
                  grant, label),
            Token(int(refresh, 16), REFRESH, client_id, user, refresh_scope, issued_at,
                  _whole(refresh_lifetime), grant, label),
        )
    except ValueError as e:
        raise ValueError(f"malformed {TAG} record: {e}") from None


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value
