"""
The control socket's wire schema, shared by the daemon and C{oauthctl}: the
AMP commands, their errors, the rows they carry, paging, and where the
socket is by default.

A leaf: it imports only the standard library, attrs,
L{twisted.protocols.amp} and L{oauthd.locations}, so that C{oauthctl} loads
nothing of the daemon.
C{docs/control.md} documents the protocol; the definitions here are it.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Mapping

from attrs import frozen

from twisted.protocols import amp

# Where the socket is by default, for oauthctl.
from oauthd.locations import SOCKET_NAME as SOCKET_NAME, default_data_dir as default_data_dir

def unix_path(description: str) -> str | None:
    """
    The socket path of a C{unix:} endpoint description (up to its first
    unescaped colon; a backslash escapes the next character), or C{None}
    for any other endpoint.
    """
    if not description.startswith("unix:"):
        return None
    path = []
    chars = iter(description[len("unix:"):])
    for c in chars:
        if c == "\\":
            path.append(next(chars, ""))
        elif c == ":":
            break
        else:
            path.append(c)
    return "".join(path)


from oauthd.control.wire.errors import (
    ERRORS as ERRORS,
    Abandoned as Abandoned,
    BadArgument as BadArgument,
    Busy as Busy,
    Conflict as Conflict,
    ControlError as ControlError,
    InvalidValue as InvalidValue,
    NotFound as NotFound,
    StorageError as StorageError,
    error_code as error_code,
)


# ---------------------------------------------------------------------------
# Paging.

PAGE_ROWS = 1000
"""
The most rows one listing page holds (and the default a client gets).
"""

PAGE_BYTES = 64_000
"""
The most bytes of JSON one page's rows take: AMP caps a value at 65,535.
"""

SCAN_LIMIT = 50_000
"""
The most snapshot entries one page examines, so that a filtered listing of
millions of tokens holds the reactor for milliseconds per page, not seconds.
"""

MAX_LISTINGS = 4
"""
Listings (snapshots) one connection may have open; a fifth drops the oldest.
"""

PAGE_ARGUMENTS: list[tuple[bytes, amp.Argument]] = [
    (b"search", amp.Unicode(optional=True)),
    (b"cursor", amp.Unicode(optional=True)),
    (b"limit", amp.Integer(optional=True)),
]

PAGE_RESPONSE: list[tuple[bytes, amp.Argument]] = [
    (b"rows", amp.Unicode()),
    (b"cursor", amp.Unicode()),
]
"""
A listing page: C{rows} is a JSON array of row objects (the fields of the
row schema of L{CLIENT}, L{USER} or L{TOKEN}), C{cursor}
names the next page, C{""} after the last. JSON rather than an AMP AmpList:
AMP encodes and decodes an AmpList in Python at about 25 microseconds a row
on each side, JSON in C at about 2.
"""


# ---------------------------------------------------------------------------
# Entities: what a client, user or token looks like on the wire, described
# once. The rows the daemon sends, the settings the add and modify commands
# take and oauthctl's tables all derive from these descriptions.


@frozen
class Field:
    """
    One field of an entity, as the control socket carries it.

    @ivar name: its key in a row; unless C{computed}, also the model's
        attribute it is read from.
    @ivar argument: its type on the wire.
    @ivar label: what oauthctl calls it in tables.
    @ivar settable: an admin may set it: it is an optional argument of the
        entity's add and modify commands.
    @ivar computed: the daemon computes it (it is not an attribute of the
        model).
    """

    name: str
    argument: amp.Argument
    label: str
    settable: bool = False
    computed: bool = False

    @property
    def key(self) -> bytes:
        return self.name.encode("ascii")

    def setting(self) -> tuple[bytes, amp.Argument]:
        """
        This field as an optional command argument.
        """
        argument = copy.copy(self.argument)
        argument.optional = True
        return (self.key, argument)


@frozen
class Entity:
    """
    A kind of thing an admin manages.

    @ivar fields: its fields, in the order of its rows.
    @ivar detail: the fields oauthctl shows for one of them, in order.
    """

    name: str
    fields: tuple[Field, ...]
    detail: tuple[str, ...]

    def __getitem__(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def row(self) -> list[tuple[bytes, amp.Argument]]:
        """
        The row schema: every field, as a command's response.
        """
        return [(field.key, field.argument) for field in self.fields]

    def settings(self) -> list[tuple[bytes, amp.Argument]]:
        """
        The settable fields, as optional command arguments.
        """
        return [field.setting() for field in self.fields if field.settable]


class ListOf(amp.ListOf):
    """
    AMP's list argument, decoded strictly: AMP's own reads the elements it
    can and silently drops a cut-short tail (so a truncated list arrives as
    C{[]} or part of itself); this one refuses it.
    """

    def fromString(self, inString: bytes) -> list[object]:
        """
        @raise ValueError: if C{inString} is not exactly a run of 16-bit
            length-prefixed elements.
        """
        elements = []
        position, end = 0, len(inString)
        while position < end:
            if end - position < 2:
                raise ValueError("a list element's length is cut short")
            (length,) = struct.unpack_from("!H", inString, position)
            position += 2
            if end - position < length:
                raise ValueError("a list element is cut short")
            elements.append(self.elementType.fromString(inString[position:position + length]))
            position += length
        return elements


_TEXT = amp.Unicode()
_TEXTS = ListOf(amp.Unicode())
_INT = amp.Integer()
_BOOL = amp.Boolean()

CLIENT = Entity(
    "client",
    (
        Field("id", _TEXT, "Client ID"),
        Field("name", _TEXT, "Name"),
        Field("type", _TEXT, "Type"),  # confidential or public
        Field("grant_types", _TEXTS, "Grant Types", settable=True),
        Field("scope", _TEXT, "Scope", settable=True),
        Field("access_ttl", _INT, "Access Token Lifetime", settable=True),
        Field("refresh_ttl", _INT, "Refresh Token Lifetime", settable=True),
        Field("max_tokens", _INT, "Token Limit", settable=True),  # -1: no limit
        Field("redirect_uris", _TEXTS, "Redirect URIs", settable=True),
        Field("enabled", _BOOL, "Enabled"),
        Field("user", _TEXT, "User", settable=True),
        Field("role", _TEXT, "Role", settable=True),
        # A resource server: it may introspect tokens.
        Field("introspect", _BOOL, "Introspection", settable=True),
        # "optional": a confidential client exempted from PKCE.
        Field("pkce", _TEXT, "PKCE", settable=True),
        # OpenID Connect: signed JWT access tokens (RFC 9068) and their
        # audience; the ID token's algorithm ("" for the server's default)
        # and whether it carries the profile claims.
        Field("jwt_access_tokens", _BOOL, "JWT Access Tokens", settable=True),
        Field("audience", _TEXTS, "Audience", settable=True),
        Field("id_token_signed_response_alg", _TEXT, "ID Token Algorithm", settable=True),
        Field("id_token_claims", _BOOL, "Claims in ID Token", settable=True),
        # Where RP-initiated logout may return the browser.
        Field("post_logout_redirect_uris", _TEXTS, "Logout Redirect URIs", settable=True),
        Field("created_at", _INT, "Created At (UTC)"),
        Field("tokens", _INT, "Live Tokens", computed=True),
        # "registration" for a client that registered itself (RFC 7591),
        # with the metadata only the registration endpoint reads.
        Field("created_by", _TEXT, "Created By", computed=True),
        Field("registration_metadata", _TEXT, "Registered Metadata"),
    ),
    # oauthctl shows max_tokens with access_ttl.
    detail=(
        "id", "name", "type", "role", "user", "scope", "grant_types", "redirect_uris",
        "post_logout_redirect_uris", "introspect", "pkce", "enabled", "access_ttl", "refresh_ttl",
        "tokens", "created_at",
        "jwt_access_tokens", "audience", "id_token_signed_response_alg", "id_token_claims",
        "created_by", "registration_metadata",
    ),
)

USER = Entity(
    "user",
    (
        Field("name", _TEXT, "Name"),
        Field("role", _TEXT, "Role", settable=True),
        Field("disabled", _BOOL, "Enabled"),  # oauthctl shows it the other way round
        Field("full_name", _TEXT, "Full Name", settable=True),
        Field("email", _TEXT, "Email", settable=True),
        Field("email_verified", _BOOL, "Email Verified", settable=True),
        Field("address", _TEXT, "Address", settable=True),
        Field("uid", _TEXT, "Subject ID"),
        Field("updated_at", _INT, "Profile Updated At (UTC)"),
        Field("has_password", _BOOL, "Password", computed=True),
        Field("created_at", _INT, "Created At (UTC)"),
        Field("tokens", _INT, "Live Tokens", computed=True),
    ),
    detail=("name", "uid", "role", "full_name", "email", "email_verified", "address", "disabled",
            "has_password", "tokens", "created_at"),
)

TOKEN = Entity(
    "token",
    (
        Field("handle", _TEXT, "Session ID"),
        Field("kind", _TEXT, "Kind"),
        Field("client_id", _TEXT, "Client"),
        Field("client_name", _TEXT, "Client Name", computed=True),
        Field("user", _TEXT, "User"),
        Field("label", _TEXT, "Name"),
        Field("scope", _TEXT, "Scope"),
        Field("issued_at", _INT, "Created At (UTC)"),
        Field("expires_at", _INT, "Expires At (UTC)"),  # 0: never
        Field("expired", _BOOL, "Expired", computed=True),
    ),
    detail=(
        "handle", "kind", "label", "user", "client_id", "client_name", "scope", "issued_at",
        "expires_at", "expired",
    ),
)

ENTITIES = (CLIENT, USER, TOKEN)

CLIENT_FIELDS = CLIENT.row()
USER_FIELDS = USER.row()
TOKEN_FIELDS = TOKEN.row()

CLIENT_SETTINGS = [*CLIENT.settings(), (b"public", amp.Boolean(optional=True))]
"""
What the add and modify commands may set of a client: its settable fields,
and C{public} (for its C{type}).
"""

USER_SETTINGS = USER.settings()


# ---------------------------------------------------------------------------
# Commands. Every one may fail with any code in ERRORS, BAD_ARGUMENT for a
# missing or mistyped argument, or AMP's own UNHANDLED (unknown command) and
# UNKNOWN (a bug in the daemon, which logs it; the connection then closes).


class ControlCommand(amp.Command):
    errors = ERRORS


class AddClient(ControlCommand):
    arguments = [(b"name", amp.Unicode()), *CLIENT_SETTINGS]
    response = [*CLIENT_FIELDS, (b"secret", amp.Unicode())]


class ListClients(ControlCommand):
    arguments = PAGE_ARGUMENTS
    response = PAGE_RESPONSE


class ShowClient(ControlCommand):
    arguments = [(b"id", amp.Unicode())]
    response = CLIENT_FIELDS


class ModifyClient(ControlCommand):
    arguments = [
        (b"id", amp.Unicode()),
        (b"name", amp.Unicode(optional=True)),
        *CLIENT_SETTINGS,
        (b"enabled", amp.Boolean(optional=True)),
        (b"regenerate_secret", amp.Boolean(optional=True)),
    ]
    response = [*CLIENT_FIELDS, (b"secret", amp.Unicode()), (b"revoked", amp.Integer())]


class RemoveClient(ControlCommand):
    arguments = [(b"id", amp.Unicode())]
    response = [*CLIENT_FIELDS, (b"revoked", amp.Integer())]


class AddUser(ControlCommand):
    arguments = [
        (b"name", amp.Unicode()),
        (b"password", amp.Unicode(optional=True)),
        *USER_SETTINGS,
    ]
    response = USER_FIELDS


class ListUsers(ControlCommand):
    arguments = PAGE_ARGUMENTS
    response = PAGE_RESPONSE


class ShowUser(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    response = USER_FIELDS


class SetPassword(ControlCommand):
    arguments = [
        (b"name", amp.Unicode()),
        (b"password", amp.Unicode()),
        (b"revoke_app_passwords", amp.Boolean(optional=True)),
    ]
    response = [*USER_FIELDS, (b"revoked", amp.Integer())]


class ModifyUser(ControlCommand):
    arguments = [
        (b"name", amp.Unicode()),
        *USER_SETTINGS,
        (b"disabled", amp.Boolean(optional=True)),
    ]
    response = [*USER_FIELDS, (b"revoked", amp.Integer())]


class RemoveUser(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    # clients: the ids of the clients the user owned, removed with them.
    response = [*USER_FIELDS, (b"revoked", amp.Integer()), (b"clients", _TEXTS)]


SECOND_FACTOR_STATUS: list[tuple[bytes, amp.Argument]] = [
    (b"name", amp.Unicode()),
    (b"enabled", amp.Boolean()),
    (b"enabled_at", amp.Integer()),  # 0 when off
    (b"recovery_codes_left", amp.Integer()),
]
"""
A user's second factor (TOTP), without its secret.
"""


class EnableSecondFactor(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    # The only reply that carries the secret (in uri and secret), once.
    response = [*SECOND_FACTOR_STATUS, (b"uri", amp.Unicode()), (b"secret", amp.Unicode()),
                (b"recovery_codes", _TEXTS)]


class DisableSecondFactor(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    response = [*SECOND_FACTOR_STATUS, (b"revoked", amp.Integer())]


class SecondFactorStatus(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    response = SECOND_FACTOR_STATUS


class ListConsents(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    # rows: a JSON array of {client_id, client_name, scope, granted_at}.
    response = [(b"rows", amp.Unicode())]


class RevokeConsent(ControlCommand):
    arguments = [(b"name", amp.Unicode()), (b"client_id", amp.Unicode())]
    response = [(b"client_id", amp.Unicode()), (b"scope", amp.Unicode()),
                (b"granted_at", amp.Integer()), (b"revoked", amp.Integer())]


class AddToken(ControlCommand):
    arguments = [
        (b"label", amp.Unicode()),
        (b"scope", amp.Unicode()),
        (b"lifetime", amp.Integer()),
        (b"user", amp.Unicode(optional=True)),
        (b"client_id", amp.Unicode(optional=True)),
        (b"uses", amp.Integer(optional=True)),
    ]
    response = [*TOKEN_FIELDS, (b"secret", amp.Unicode())]


class ListTokens(ControlCommand):
    arguments = [*PAGE_ARGUMENTS, (b"expired", amp.Boolean(optional=True))]
    response = PAGE_RESPONSE


class ShowToken(ControlCommand):
    arguments = [(b"reference", amp.Unicode())]
    response = TOKEN_FIELDS


class RemoveToken(ControlCommand):
    arguments = [(b"reference", amp.Unicode())]
    response = [*TOKEN_FIELDS, (b"revoked", amp.Integer())]


# After ControlCommand, which they subclass.
from oauthd.control.wire.keys import ListKeys as ListKeys, RotateKeys as RotateKeys  # noqa: E402
from oauthd.control.wire.backup import (  # noqa: E402
    BACKUP_PAGE as BACKUP_PAGE, EndBackup as EndBackup, ReadBackup as ReadBackup,
    StartBackup as StartBackup,
)
from oauthd.control.wire.reload import Reload as Reload  # noqa: E402
from oauthd.control.wire.status import Compact as Compact, Status as Status  # noqa: E402
from oauthd.control.wire.audit import ReadAudit as ReadAudit, VerifyAudit as VerifyAudit  # noqa: E402

COMMANDS: tuple[type[ControlCommand], ...] = (
    Status, Compact,
    AddClient, ListClients, ShowClient, ModifyClient, RemoveClient,
    AddUser, ListUsers, ShowUser, SetPassword, ModifyUser, RemoveUser,
    EnableSecondFactor, DisableSecondFactor, SecondFactorStatus, ListConsents, RevokeConsent,
    AddToken, ListTokens, ShowToken, RemoveToken, ListKeys, RotateKeys,
    StartBackup, ReadBackup, EndBackup,
    Reload,
    ReadAudit, VerifyAudit,
)
BY_NAME: dict[bytes, type[ControlCommand]] = {command.commandName: command for command in COMMANDS}
"""
The commands by their wire name.
"""
