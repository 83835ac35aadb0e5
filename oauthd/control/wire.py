"""
The control socket's wire schema, shared by the daemon and C{oauthctl}: the
AMP commands, their errors, the rows they carry, paging, and where the
socket is by default.

A leaf: it imports only the standard library, attrs and
L{twisted.protocols.amp}, so that C{oauthctl} loads nothing of the daemon.
C{docs/control.md} documents the protocol; the definitions here are it.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.protocols import amp

SOCKET_NAME = "control.sock"
"""
The control socket's file name in the data directory, by default.
"""


def default_data_dir(environ: Mapping[str, str]) -> str:
    """
    The data directory when none is configured: systemd's C{$STATE_DIRECTORY}
    (its first entry) if set, else C{./oauthd-data}.
    """
    state = environ.get("STATE_DIRECTORY", "")
    if state:
        return state.split(":")[0]
    return "./oauthd-data"


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


# ---------------------------------------------------------------------------
# Errors: one code on the wire per kind, a one-line description each. The
# daemon raises these (mapping what the layers below it raise); a client of
# the commands below gets them back.


class ControlError(Exception):
    """
    The daemon refused the command; the message is one line for a person.
    Its own code (C{ERROR}) is any refusal none of the subclasses names.
    """


class NotFound(ControlError):
    """
    No such client, user or token.
    """


class Conflict(ControlError):
    """
    The name is taken.
    """


class InvalidValue(ControlError):
    """
    A value is malformed or out of range.
    """


class BadArgument(ControlError):
    """
    An argument is missing or not of its declared type.
    """


class Busy(ControlError):
    """
    The daemon cannot do this now (password pool full, compaction running);
    try again.
    """


class StorageError(ControlError):
    """
    The journal could not record the change; the daemon needs attention.
    """


class Abandoned(ControlError):
    """
    The connection was lost before the change was made; nothing changed.
    """


ERRORS: dict[type[Exception], bytes] = {
    NotFound: b"NOT_FOUND",
    Conflict: b"CONFLICT",
    InvalidValue: b"INVALID_VALUE",
    BadArgument: b"BAD_ARGUMENT",
    Busy: b"BUSY",
    StorageError: b"STORAGE",
    Abandoned: b"ABANDONED",
    ControlError: b"ERROR",
}
"""
Error codes, most specific first (AMP picks the first class that matches).
"""


def error_code(error: ControlError) -> bytes:
    """
    The code C{error} is sent with.
    """
    return next(code for kind, code in ERRORS.items() if isinstance(error, kind))


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
row schema: L{CLIENT_FIELDS}, L{USER_FIELDS} or L{TOKEN_FIELDS}), C{cursor}
names the next page, C{""} after the last. JSON rather than an AMP AmpList:
AMP encodes and decodes an AmpList in Python at about 25 microseconds a row
on each side, JSON in C at about 2.
"""


# ---------------------------------------------------------------------------
# Row schemas: what a client, user or token looks like on the wire.

CLIENT_FIELDS: list[tuple[bytes, amp.Argument]] = [
    (b"id", amp.Unicode()),
    (b"name", amp.Unicode()),
    (b"type", amp.Unicode()),
    (b"grant_types", amp.ListOf(amp.Unicode())),
    (b"scope", amp.Unicode()),
    (b"access_ttl", amp.Integer()),
    (b"refresh_ttl", amp.Integer()),
    (b"max_tokens", amp.Integer()),
    (b"redirect_uris", amp.ListOf(amp.Unicode())),
    (b"enabled", amp.Boolean()),
    (b"user", amp.Unicode()),
    (b"role", amp.Unicode()),
    (b"created_at", amp.Integer()),
    (b"tokens", amp.Integer()),
]

USER_FIELDS: list[tuple[bytes, amp.Argument]] = [
    (b"name", amp.Unicode()),
    (b"role", amp.Unicode()),
    (b"disabled", amp.Boolean()),
    (b"full_name", amp.Unicode()),
    (b"email", amp.Unicode()),
    (b"has_password", amp.Boolean()),
    (b"created_at", amp.Integer()),
    (b"tokens", amp.Integer()),
]

TOKEN_FIELDS: list[tuple[bytes, amp.Argument]] = [
    (b"handle", amp.Unicode()),
    (b"kind", amp.Unicode()),
    (b"client_id", amp.Unicode()),
    (b"client_name", amp.Unicode()),
    (b"user", amp.Unicode()),
    (b"label", amp.Unicode()),
    (b"scope", amp.Unicode()),
    (b"issued_at", amp.Integer()),
    (b"expires_at", amp.Integer()),
    (b"expired", amp.Boolean()),
]


# ---------------------------------------------------------------------------
# Commands. Every one may fail with any code in ERRORS, BAD_ARGUMENT for a
# missing or mistyped argument, or AMP's own UNHANDLED (unknown command) and
# UNKNOWN (a bug in the daemon, which logs it; the connection then closes).


class ControlCommand(amp.Command):
    errors = ERRORS


class Status(ControlCommand):
    response = [
        (b"version", amp.Unicode()),
        (b"uptime", amp.Float()),
        (b"clients", amp.Integer()),
        (b"users", amp.Integer()),
        (b"tokens", amp.Integer()),
        (b"journal_records", amp.Integer()),
        (b"journal_bytes", amp.Integer()),
        (b"live_records", amp.Integer()),
    ]


class Compact(ControlCommand):
    response = [
        (b"records_before", amp.Integer()),
        (b"records_after", amp.Integer()),
        (b"bytes_before", amp.Integer()),
        (b"bytes_after", amp.Integer()),
    ]


_CLIENT_SETTINGS: list[tuple[bytes, amp.Argument]] = [
    (b"scope", amp.Unicode(optional=True)),
    (b"grant_types", amp.ListOf(amp.Unicode(), optional=True)),
    (b"access_ttl", amp.Integer(optional=True)),
    (b"refresh_ttl", amp.Integer(optional=True)),
    (b"max_tokens", amp.Integer(optional=True)),
    (b"redirect_uris", amp.ListOf(amp.Unicode(), optional=True)),
    (b"public", amp.Boolean(optional=True)),
    (b"user", amp.Unicode(optional=True)),
    (b"role", amp.Unicode(optional=True)),
]


class AddClient(ControlCommand):
    arguments = [(b"name", amp.Unicode()), *_CLIENT_SETTINGS]
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
        *_CLIENT_SETTINGS,
        (b"enabled", amp.Boolean(optional=True)),
        (b"regenerate_secret", amp.Boolean(optional=True)),
    ]
    response = [*CLIENT_FIELDS, (b"secret", amp.Unicode()), (b"revoked", amp.Integer())]


class RemoveClient(ControlCommand):
    arguments = [(b"id", amp.Unicode())]
    response = [*CLIENT_FIELDS, (b"revoked", amp.Integer())]


_USER_SETTINGS: list[tuple[bytes, amp.Argument]] = [
    (b"role", amp.Unicode(optional=True)),
    (b"email", amp.Unicode(optional=True)),
    (b"full_name", amp.Unicode(optional=True)),
]


class AddUser(ControlCommand):
    arguments = [
        (b"name", amp.Unicode()),
        (b"password", amp.Unicode(optional=True)),
        *_USER_SETTINGS,
    ]
    response = USER_FIELDS


class ListUsers(ControlCommand):
    arguments = PAGE_ARGUMENTS
    response = PAGE_RESPONSE


class ShowUser(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    response = USER_FIELDS


class SetPassword(ControlCommand):
    arguments = [(b"name", amp.Unicode()), (b"password", amp.Unicode())]
    response = USER_FIELDS


class ModifyUser(ControlCommand):
    arguments = [
        (b"name", amp.Unicode()),
        *_USER_SETTINGS,
        (b"disabled", amp.Boolean(optional=True)),
    ]
    response = [*USER_FIELDS, (b"revoked", amp.Integer())]


class RemoveUser(ControlCommand):
    arguments = [(b"name", amp.Unicode())]
    response = [*USER_FIELDS, (b"revoked", amp.Integer())]


class AddToken(ControlCommand):
    arguments = [
        (b"label", amp.Unicode()),
        (b"scope", amp.Unicode()),
        (b"lifetime", amp.Integer()),
        (b"user", amp.Unicode(optional=True)),
        (b"client_id", amp.Unicode(optional=True)),
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


COMMANDS: tuple[type[ControlCommand], ...] = (
    Status, Compact,
    AddClient, ListClients, ShowClient, ModifyClient, RemoveClient,
    AddUser, ListUsers, ShowUser, SetPassword, ModifyUser, RemoveUser,
    AddToken, ListTokens, ShowToken, RemoveToken,
)
BY_NAME: dict[bytes, type[ControlCommand]] = {command.commandName: command for command in COMMANDS}
"""
The commands by their wire name.
"""
