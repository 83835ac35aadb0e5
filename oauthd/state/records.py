"""
Records: the only way the state changes, at start-up (replay) and at run
time alike, so the event log and memory cannot disagree. One frozen class per
kind, and the codec that turns them into event-log payloads and back.

A payload is UTF-8 text: the record's tag and its fields separated by tabs
(no field may contain one). Token records, by far the most numerous, are
plain fields so a million replay in a few seconds; client and user records
carry one field, a JSON object of the entity's attributes::

    client  {client fields}     ClientPut       create or replace a client
    client- client_id           ClientRemoved   delete a client and its tokens
    user    {user fields}       UserPut         create or replace a user
    user-   name                UserRemoved     delete a user and its tokens
    tok     key kind client_id user scope issued_at lifetime grant label
                                TokenIssued     issue a token (key: 32 hex digits)
    tok-    key                 TokenRevoked    revoke one token
    grant-  grant               GrantRevoked    revoke every token of one grant
    used    key                 RefreshUsed     mark a refresh token used
    rot     (see L{oauthd.state.rotation_records})
                                TokenRotated    a refresh: the four records above
                                                in one (used, revoked, issued twice)
    2fa     {second factor}     SecondFactorEnabled   turn on TOTP for a user
    2fa-    name                SecondFactorDisabled  turn it off
    2fa-step name step          TotpStepUsed    a TOTP code of that time step was used
    2fa-code name digest        RecoveryCodeUsed  a recovery code (by digest) was used
    uses    key remaining       TokenUses       registrations an initial access token has left
    family  grant client_id user started expires_at
                                FamilyHeld      a refresh family, as snapshots hold it
    spent   key grant           RefreshSpent    a family's used refresh token, as
                                                snapshots hold it

A snapshot (compaction) writes, after the tokens, each live refresh family
and then its used refresh tokens: a used refresh token is held only as its
key. Journals from before family records hold used refresh tokens as C{tok}
records of kind C{refresh-used}; replay reads those as used keys, and takes a
family's start from the first of its tokens it sees.
    code, browser, half, consent (and more): the authorization endpoint's
                                (L{oauthd.state.authz_records})
    key, key~                   signing keys (L{oauthd.state.keys})
    audit-anchor                where the audit trail begins (L{oauthd.state.audit_anchor})
    audit                       a change's audit events, in a shared log (L{oauthd.state.audit_records})

Applying a record is idempotent, and a record naming something absent does
nothing (see L{oauthd.state.model}). Times are whole seconds on the injected
clock; a lifetime of 0 means the token never expires.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import asdict, frozen

from oauthd.state import audit_anchor, audit_records, authz_records, device, keys, rotation_records
from oauthd.state.authz_records import AUTHZ_TYPES, AuthzRecord
from oauthd.state.keys import KEY_TYPES, KeyRecord
from oauthd.state.rotation_records import TokenRotated
from oauthd.state.entities import KINDS, Client, SecondFactor, Token, User, key_hex

KINDS_BY_NAME = {kind: kind for kind in KINDS}
"""
Each token kind by its name, so a replayed token shares the one string.
"""


@frozen
class ClientPut:
    client: Client


@frozen
class ClientRemoved:
    client_id: str


@frozen
class UserPut:
    user: User


@frozen
class UserRemoved:
    name: str


@frozen
class TokenIssued:
    token: Token


@frozen
class TokenRevoked:
    key: int


@frozen
class GrantRevoked:
    grant: str


@frozen
class RefreshUsed:
    key: int


@frozen
class FamilyHeld:
    """
    A live refresh family: its grant, owners, start and the end of its last
    token (0: never).
    """

    grant: str
    client_id: str
    user: str
    started: int
    expires_at: int


@frozen
class RefreshSpent:
    """
    A refresh token C{grant}'s family has used, by its key.
    """

    key: int
    grant: str


@frozen
class SecondFactorEnabled:
    """
    Turn on TOTP for C{factor.user}, replacing any enrollment it had. (Its
    C{last_step} is not written: L{TotpStepUsed} records carry the steps.)
    """

    factor: SecondFactor


@frozen
class SecondFactorDisabled:
    user: str


@frozen
class TotpStepUsed:
    user: str
    step: int


@frozen
class RecoveryCodeUsed:
    user: str
    digest: str


@frozen
class TokenUses:
    """
    How many more registrations the initial access token with C{key} allows
    (0: none, and its table entry goes).
    """

    key: int
    remaining: int


SecondFactorRecord = SecondFactorEnabled | SecondFactorDisabled | TotpStepUsed | RecoveryCodeUsed

Record = (
    ClientPut | ClientRemoved | UserPut | UserRemoved | TokenIssued | TokenRevoked
    | GrantRevoked | RefreshUsed | TokenRotated | FamilyHeld | RefreshSpent | SecondFactorRecord | AuthzRecord
    | device.DevicePut
    | KeyRecord | TokenUses | audit_anchor.AuditAnchored | audit_records.AuditNoted
)


def oldest_beyond(live: list[Token], limit: int, adding: int = 1) -> list[Record]:
    """
    Revocations of the oldest of C{live} (oldest first), so that after
    C{adding} more at most C{limit} are left; none for a limit below 0.
    """
    if limit < 0:
        return []
    excess = len(live) + adding - limit
    return [TokenRevoked(t.key) for t in live[:max(0, excess)]]


TOKEN_TAG = b"tok\t"
"""
How a token record's payload begins (replay reads those itself).
"""


def _json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


_ENCODED_ELSEWHERE: dict[type, Callable[[Any], str]] = {
    # The authorization endpoint's records (issue 14), the signing keys', ...
    **dict.fromkeys(AUTHZ_TYPES, authz_records.encode),
    **dict.fromkeys(KEY_TYPES, keys.encode),
    device.DevicePut: device.encode,
    audit_anchor.AuditAnchored: audit_anchor.encode,
    audit_records.AuditNoted: audit_records.encode,
}
"""
The records whose codec is in a module of their own, and its encoder.
"""


def encode(record: Record) -> bytes:
    """
    A record as an event-log payload.

    @raise ValueError: if a text field contains a tab.
    """
    # A token request's records first, by their type alone.
    if type(record) is TokenRotated:
        return rotation_records.encode(record).encode("utf-8")
    if type(record) is TokenIssued:
        t = record.token
        text = (
            f"tok\t{key_hex(t.key)}\t{t.kind}\t{t.client_id}\t{t.user}\t{t.scope}\t"
            f"{t.issued_at}\t{t.lifetime}\t{t.grant}\t{t.label}"
        )
        if text.count("\t") != 9:
            raise ValueError("record fields may not contain a tab")
        return text.encode("utf-8")
    if type(record) is TokenRevoked:
        return ("tok-\t" + key_hex(record.key)).encode("utf-8")
    if type(record) is RefreshUsed:
        return ("used\t" + key_hex(record.key)).encode("utf-8")
    elsewhere = _ENCODED_ELSEWHERE.get(type(record))
    if elsewhere is not None:
        return elsewhere(record).encode("utf-8")
    match record:
        case GrantRevoked(grant=grant):
            text = _one_field("grant-", grant)
        case ClientPut(client=client):
            text = "client\t" + _json(_client_fields(client))
        case UserPut(user=user):
            text = "user\t" + _json(_unless_default(asdict(user), _USER_FIELDS_IF_SET))
        case ClientRemoved(client_id=client_id):
            text = _one_field("client-", client_id)
        case UserRemoved(name=name):
            text = _one_field("user-", name)
        case SecondFactorEnabled(factor=f):
            text = "2fa\t" + _json({"user": f.user, "secret": f.secret,
                                    "recovery": sorted(f.recovery), "enabled_at": f.enabled_at})
        case SecondFactorDisabled(user=user):
            text = _one_field("2fa-", user)
        case TotpStepUsed(user=user, step=step):
            text = _one_field("2fa-step", user, str(step))
        case RecoveryCodeUsed(user=user, digest=digest):
            text = _one_field("2fa-code", user, digest)
        case FamilyHeld(grant=grant, client_id=client_id, user=user):
            text = _one_field("family", grant, client_id, user, str(record.started), str(record.expires_at))
        case RefreshSpent(key=key, grant=grant):
            text = _one_field("spent", key_hex(key), grant)
        case TokenUses(key=key, remaining=remaining):
            text = _one_field("uses", key_hex(key), str(remaining))
    return text.encode("utf-8")


_CLIENT_FIELDS_IF_SET: dict[str, object] = {
    "introspect": False, "pkce": "required", "jwt_access_tokens": False, "audience": [],
    "id_token_signed_response_alg": "", "id_token_claims": False,
    "post_logout_redirect_uris": [], "registration_digest": "", "registration_metadata": "",
}
"""
Client fields added after the format was fixed, with their defaults (as
JSON has them): written only when not the default, so the record of a
client without them is byte for byte what it was, and one read from an
older journal gets their default.
"""

_USER_FIELDS_IF_SET: dict[str, object] = {
    "uid": "", "email_verified": False, "address": "", "updated_at": 0,
}
"""
User fields added after the format was fixed, written likewise.
"""


def _client_fields(client: Client) -> dict[str, Any]:
    return _unless_default(asdict(client), _CLIENT_FIELDS_IF_SET)


def _unless_default(fields: dict[str, Any], later: dict[str, object]) -> dict[str, Any]:
    for name, default in later.items():
        value = fields[name]
        if (list(value) if isinstance(value, tuple) else value) == default:
            del fields[name]
    return fields


def _one_field(tag: str, *values: str) -> str:
    """
    A record of plain text fields: its tag and each value, tab-separated.
    """
    if any("\t" in value for value in values):
        raise ValueError("record fields may not contain a tab")
    return "\t".join((tag, *values))


def decode(payload: bytes) -> Record:
    """
    The record in an event-log payload.

    @raise ValueError: if the payload is not a well-formed record.
    """
    fields = payload.decode("utf-8").split("\t")
    tag = fields[0]
    if tag == "tok" and len(fields) > 1:
        return TokenIssued(parse_token(payload))
    if tag in _SEVERAL_FIELDS:
        return _several_fields(tag, fields)
    if tag == rotation_records.TAG:
        return rotation_records.decode(fields)
    if tag in authz_records.DECODERS:
        return authz_records.decode(fields)
    if tag in keys.DECODERS:
        return keys.decode(fields)
    if tag == device.TAG:
        return device.decode(fields)
    if tag == audit_anchor.TAG:
        return audit_anchor.decode(fields)
    if tag == audit_records.TAG:
        return audit_records.decode(fields)
    if tag in _TWO_FIELDS:
        if len(fields) != 3:
            raise ValueError(f"malformed {tag} record: it has {len(fields)} fields, not 3")
        try:
            return _TWO_FIELDS[tag](fields[1], fields[2])
        except ValueError as e:
            raise ValueError(f"malformed {tag} record: {e}") from None
    if tag in _ENTITY:
        if len(fields) != 2:
            raise ValueError(f"a {tag} record has 2 fields")
        value = json.loads(fields[1])
        if not isinstance(value, dict):
            raise ValueError(f"a {tag} record holds a JSON object")
    elif tag in _ONE_FIELD:
        # (The untyped records' message here was a TypeError's.)
        if len(fields) != 2:
            raise ValueError(f"malformed {tag} record: it has {len(fields)} fields, not 2")
        value = fields[1]
    else:
        raise ValueError(f"unknown record type {str(fields[:1])[:40]}")
    try:
        return _ONE_FIELD[tag](value) if tag in _ONE_FIELD else _ENTITY[tag](value)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"malformed {tag} record: {e}") from None


def _client(fields: dict[str, Any]) -> ClientPut:
    for name in ("grant_types", "redirect_uris", "audience", "post_logout_redirect_uris"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return ClientPut(Client(**_named(fields, "id")))


def _named(fields: dict[str, Any], key: str) -> dict[str, Any]:
    """
    C{fields}, if the entity's name in them is text (it is a key of the
    state's tables).
    """
    if not isinstance(fields.get(key), str):
        raise TypeError(f"its {key} is not text")
    return fields


def _second_factor(fields: dict[str, Any]) -> SecondFactorEnabled:
    fields = _named(fields, "user")
    if not isinstance(fields.get("secret"), str) or not isinstance(fields.get("enabled_at"), int):
        raise TypeError("its secret or enabled_at is missing")
    recovery = fields["recovery"]
    if not isinstance(recovery, list) or not all(isinstance(d, str) for d in recovery):
        raise TypeError("its recovery digests are not a list of text")
    return SecondFactorEnabled(SecondFactor(
        fields["user"], fields["secret"], frozenset(recovery), fields["enabled_at"]))


_ENTITY: dict[str, Callable[[dict[str, Any]], Record]] = {
    "client": _client,
    "user": lambda fields: UserPut(User(**_named(fields, "name"))),
    "2fa": _second_factor,
}

_TWO_FIELDS: dict[str, Callable[[str, str], Record]] = {
    "2fa-step": lambda user, step: TotpStepUsed(user, int(step)),
    "2fa-code": RecoveryCodeUsed,
    "uses": lambda key, remaining: TokenUses(int(key, 16), _whole(remaining)),
}

_ONE_FIELD: dict[str, Callable[[str], Record]] = {
    "tok-": lambda text: TokenRevoked(int(text, 16)),
    "used": lambda text: RefreshUsed(int(text, 16)),
    "grant-": GrantRevoked,
    "client-": ClientRemoved,
    "user-": UserRemoved,
    "2fa-": SecondFactorDisabled,
}


def parse_token(payload: bytes) -> Token:
    """
    The token a C{tok} record's payload issues.

    @raise ValueError: if it is malformed.
    """
    (_, key, kind, client_id, user, scope, issued_at, lifetime, grant, label) = (
        payload.decode("utf-8").split("\t")
    )
    return Token(
        int(key, 16), KINDS_BY_NAME[kind], client_id, user, scope, int(issued_at), int(lifetime),
        grant, label,
    )


def _several_fields(tag: str, fields: list[str]) -> Record:
    try:
        match fields:
            case ["family", grant, client_id, user, started, expires_at]:
                return FamilyHeld(grant, client_id, user, _whole(started), _whole(expires_at))
            case ["spent", key, grant]:
                return RefreshSpent(int(key, 16), grant)
    except ValueError as e:
        raise ValueError(f"malformed {tag} record: {e}") from None
    raise ValueError(f"malformed {tag} record: it has {len(fields)} fields")


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


_SEVERAL_FIELDS = frozenset({"family", "spent"})
