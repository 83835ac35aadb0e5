"""
The control socket's errors: one code on the wire per kind, a one-line
description each. The daemon raises these (mapping what the layers below it
raise); a client of the commands gets them back.
"""

from __future__ import annotations


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
    The journal or the audit trail could not record the change (or, as its
    message says, the change was made but its audit event is not written
    yet); the daemon needs attention.
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
