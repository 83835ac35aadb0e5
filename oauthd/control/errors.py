"""
What the layers below the control socket raise, as the wire's errors: one
function decides the code and the one line a client is answered with.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.protocols import amp
from twisted.python.failure import Failure

from oauthd.control import wire
from oauthd.eventlog import CompactionInProgress, JournalError
from oauthd.interfaces import AuditFailing, HasherBusy, PasswordTooLong
from oauthd.protocol.errors import AdminError, Conflict, InvalidValue, NotFound
from oauthd.protocol.scopes import ScopeError
from oauthd.state.store import NotDurable

_PROTOCOL_ERRORS: tuple[tuple[type[AdminError], type[wire.ControlError]], ...] = (
    (NotFound, wire.NotFound),
    (Conflict, wire.Conflict),
    (InvalidValue, wire.InvalidValue),
    (AdminError, wire.ControlError),
)


def wire_error(error: BaseException) -> wire.ControlError | None:
    """
    The error to answer with for an exception raised by the layers below, or
    C{None} if it is a bug (then AMP logs it and answers C{UNKNOWN}).
    """
    if isinstance(error, wire.ControlError):
        return error
    if isinstance(error, AdminError):
        kind = next(wired for own, wired in _PROTOCOL_ERRORS if isinstance(error, own))
        return kind(str(error))
    if isinstance(error, (ScopeError, PasswordTooLong)):
        return wire.InvalidValue(str(error))
    if isinstance(error, HasherBusy):
        return wire.Busy("too many passwords are being hashed; try again shortly")
    if isinstance(error, CompactionInProgress):
        return wire.Busy("a compaction is already running")
    if isinstance(error, NotDurable):
        if error.made:
            return wire.StorageError(
                "the change was made but its audit event could not be written"
                f" ({one_line(str(error.reason))}); the daemon needs attention")
        error = error.reason
    if isinstance(error, AuditFailing):
        return wire.StorageError(f"the audit trail failed: {one_line(str(error))}")
    if isinstance(error, JournalError):
        return wire.StorageError(f"the journal failed: {one_line(str(error))}")
    if isinstance(error, CancelledError):
        return wire.Abandoned("the connection was lost; nothing was changed")
    return None


def answerable(failure: Failure) -> Failure:
    """
    A responder's failure as AMP should answer it: an error of the layers
    below as its wire error (AMP itself answers those a command declares,
    and logs anything else as a bug).
    """
    if failure.value is None or failure.check(amp.RemoteAmpError):
        return failure
    error = wire_error(failure.value)
    if error is None:
        return failure
    return Failure(amp.RemoteAmpError(wire.error_code(error), str(error), local=failure))


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
