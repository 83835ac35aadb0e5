# -*- test-case-name: tests.test_control -*-
"""
The admin control channel: AMP over a UNIX socket.

The socket is bound under a 0177 umask (so it is never, even for an instant,
reachable by anyone but the daemon's user), then set to the endpoint's mode
(0600 by default) inside the 0700 data directory; and every connection is
checked by the peer's uid (SO_PEERCRED), so two layers stand between a local
user and the daemon's state.

The wire protocol (commands, arguments, errors, paging) is documented in
C{docs/control.md}; the command classes below are its definition, shared by
the daemon and C{oauthctl}.

Every change goes through L{Authority} and so through the journal: a reply is
sent only once the change is durable, and each change is an audit event
carrying the peer's uid. A command whose change has not been applied when
its connection is lost (a password still being hashed) is abandoned with no
change; one already applied completes, and its reply is dropped.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import struct
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from attrs import define, frozen

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from oauthd import __version__

from oauthd.control import wire
from oauthd.control.wire import (
    BY_NAME,
    MAX_LISTINGS,
    PAGE_BYTES,
    PAGE_ROWS,
    SCAN_LIMIT,
    AddClient,
    AddToken,
    AddUser,
    Compact,
    ListClients,
    ListTokens,
    ListUsers,
    ModifyClient,
    ModifyUser,
    RemoveClient,
    RemoveToken,
    RemoveUser,
    SetPassword,
    ShowClient,
    ShowToken,
    ShowUser,
    Status,
    unix_path,
)
from oauthd.protocol import tokens
from oauthd.protocol.authority import (
    AdminError,
    Authority,
    Conflict,
    InvalidValue,
    NotFound,
    check_username,
)
from oauthd.interfaces import HasherBusy, PasswordTooLong
from oauthd.eventlog.journal import CompactionInProgress, JournalError
from oauthd.state.model import Client, Token, User
from oauthd.protocol.scopes import ScopeError

log = Logger()

T = TypeVar("T")

MAX_BOX_KEYS = 64
MAX_BOX_BYTES = 256 * 1024
"""
Limits on one incoming AMP box: AMP itself bounds each key (255 bytes) and
value (65,535) but not their number. A box over either is a protocol
violation and closes the connection.
"""

MAX_REDIRECT_URIS = 16
MIN_PASSWORD = 8
INT_RANGE = range(-(2**31), 2**31)


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
    if isinstance(error, JournalError):
        return wire.StorageError(f"the journal failed: {one_line(str(error))}")
    if isinstance(error, CancelledError):
        return wire.Abandoned("the connection was lost; nothing was changed")
    return None


def _answerable(failure: Failure) -> Failure:
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


def _text(value: str) -> str:
    """
    C{value} as text UTF-8 can carry (a lone surrogate from a JSON client
    name would otherwise break a whole listing).
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _texts(values: Iterable[str]) -> list[str]:
    return [_text(value) for value in values]


def _encodable(argument: amp.Argument) -> Callable[[Any], Any] | None:
    """
    What makes a value of type C{argument} encodable as a row's (text safe
    to encode, a list a list), if anything.
    """
    if isinstance(argument, amp.Unicode):
        return _text
    if isinstance(argument, amp.ListOf):
        return _texts if isinstance(argument.elementType, amp.Unicode) else list
    return None


def row_maker(entity: wire.Entity) -> Callable[..., dict[str, Any]]:
    """
    How to make rows of C{entity}: C{row(item, **computed)} is a row with
    the described fields in order, each read from the model object C{item}
    by its name or, for a computed field, given; text made encodable.
    """
    plan = [
        (field.name, field.computed, _encodable(field.argument))
        for field in entity.fields
    ]

    def row(item: object, **computed: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, given, encodable in plan:
            value = computed[name] if given else getattr(item, name)
            values[name] = value if encodable is None else encodable(value)
        return values

    return row


_client_row = row_maker(wire.CLIENT)
_user_row = row_maker(wire.USER)
_token_row = row_maker(wire.TOKEN)


def client_row(client: Client, live_tokens: int) -> dict[str, Any]:
    return _client_row(client, tokens=live_tokens)


def user_row(user: User, live_tokens: int) -> dict[str, Any]:
    return _user_row(user, has_password=bool(user.password_hash), tokens=live_tokens)


def token_row(token: Token, client_name: str, now: int) -> dict[str, Any]:
    return _token_row(token, client_name=client_name, expired=not token.live(now))


# ---------------------------------------------------------------------------
# Who may connect.


@frozen
class PeerCredentials:
    """
    Who is at the other end of a UNIX socket, as the kernel recorded it at
    connect() time.

    @ivar groups: the peer's supplementary groups (SO_PEERGROUPS), if the
        kernel reports them.
    """

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
"""
Linux's SO_PEERGROUPS (since 4.13); Python 3.11 does not name it.
"""


def socket_peer_credentials(transport: ITransport) -> PeerCredentials | None:
    """
    The kernel's record of who connected (Linux SO_PEERCRED, and
    SO_PEERGROUPS where available), or C{None} when the transport is not a
    UNIX socket.

    Only the kernel is asked, never the user or group databases: those may
    be remote (LDAP) and would block the reactor.
    """
    try:
        sock = transport.getHandle()  # type: ignore[attr-defined]
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    groups: tuple[int, ...] = ()
    try:
        # 1024 bytes is as much as Python lets getsockopt read: 256 groups.
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        groups = struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    except OSError:
        pass
    return PeerCredentials(pid, uid, gid, groups)


def resolve_group(name: str) -> int | None:
    """
    The gid of the configured admin group (a name or a number), looked up
    once at start-up; C{None} for none.

    @raise KeyError: if there is no such group.
    """
    if not name:
        return None
    if name.isascii() and name.isdigit():
        return int(name)
    return grp.getgrnam(name).gr_gid


# ---------------------------------------------------------------------------
# Listings.


@define
class _Listing:
    """
    One paged listing on one connection: a snapshot of keys taken at its
    first page, and how to turn a run of keys into rows (C{None} for an item
    that has since gone or does not match the listing's filter).
    """

    command: bytes
    keys: list[Any]
    rows: Callable[[list[Any]], list[dict[str, Any] | None]]


_CHUNK = 256
"""
Keys turned into rows at a time while filling a page.
"""


def _page_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_ROWS
    if not 1 <= limit <= PAGE_ROWS:
        raise InvalidValue(f"limit must be between 1 and {PAGE_ROWS}")
    return limit


class ControlProtocol(amp.AMP):
    """
    One admin connection.

    @ivar peer: who connected, once admitted.
    """

    factory: ControlFactory
    peer: PeerCredentials | None = None

    def __init__(self) -> None:
        super().__init__()
        self._closing = False
        self._box_bytes = 0
        self._listings: dict[int, _Listing] = {}
        self._next_listing = 1
        self._cancellable: set[Deferred[Any]] = set()

    @property
    def authority(self) -> Authority:
        return self.factory.authority

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        creds = self.factory.peer_credentials(self.transport)
        if creds is None or not self.factory.allows(creds):
            uid = None if creds is None else creds.uid
            log.warn("control: refused connection from uid {peer_uid}", peer_uid=uid)
            self.authority.audit("control.connect", "denied", peer_uid="unknown" if uid is None else uid)
            self._closing = True
            self.transport.loseConnection()
            return
        self.peer = creds
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self.peer is None:
            return
        super().dataReceived(data)

    def stringReceived(self, string: bytes) -> None:
        if self._closing:
            return
        self._box_bytes += len(string) + 2
        super().stringReceived(string)

    def proto_value(self, string: bytes) -> str:
        state: str = super().proto_value(string)
        keys = len(self._currentBox or ())
        if keys > MAX_BOX_KEYS or self._box_bytes > MAX_BOX_BYTES:
            self._violation(
                "a box of over {max_keys} keys or {max_bytes} bytes",
                max_keys=MAX_BOX_KEYS, max_bytes=MAX_BOX_BYTES,
            )
        return state

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self._box_bytes = 0
        if amp.COMMAND not in box or amp.ASK not in box or amp.ANSWER in box or amp.ERROR in box:
            # The daemon never asks, so an answer (or a box that is neither)
            # is a client that does not speak the protocol. A command must
            # want its answer: AMP would log a failed one-way command as an
            # unhandled error and drop the connection.
            self._violation("a box that is not a command with an _ask tag")
            return
        super().ampBoxReceived(box)

    def lengthLimitExceeded(self, length: int) -> None:
        self._violation("an AMP key of {length} bytes", length=length)

    def _violation(self, what: str, **fields: object) -> None:
        if self._closing:
            return
        self._closing = True
        log.warn(
            "control: closing the connection of uid {peer_uid}: it sent " + what,
            peer_uid=None if self.peer is None else self.peer.uid, **fields,
        )
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._listings.clear()
        for pending in list(self._cancellable):
            pending.cancel()
        super().connectionLost(reason)

    # -- dispatch ----------------------------------------------------------

    def locateResponder(self, name: bytes) -> Callable[[amp.AmpBox], Any] | None:
        """
        The responder for C{name}, with its arguments checked first: a
        missing or mistyped one is answered with C{BAD_ARGUMENT} (AMP would
        log a traceback and close the connection).
        """
        responder = super().locateResponder(name)
        command = BY_NAME.get(name)
        if responder is None or command is None:
            return None

        def checked(box: amp.AmpBox) -> Any:
            _check_arguments(command, box, self)
            return responder(box).addErrback(_answerable)

        return checked

    def _audit(self, event: str, outcome: str, **fields: object) -> None:
        assert self.peer is not None
        self.authority.audit(event, outcome, peer_uid=self.peer.uid, **fields)

    async def _change(
        self, event: str, fields: dict[str, object], work: Coroutine[Any, Any, T],
    ) -> T:
        """
        Run one change, auditing its outcome; library errors become wire
        errors.
        """
        try:
            result = await work
        except Exception as e:
            error = wire_error(e)
            outcome = "abandoned" if isinstance(error, wire.Abandoned) else "failed"
            self._audit(event, outcome, reason=one_line(str(error or e), 120), **fields)
            if error is None:
                raise
            raise error from None
        return result

    def _until_disconnected(self, d: Deferred[T]) -> Deferred[T]:
        """
        C{d}, cancelled if the connection is lost before it fires. Only for
        work that changes nothing (hashing a password).
        """
        self._cancellable.add(d)

        def done(result: T) -> T:
            self._cancellable.discard(d)
            return result

        return d.addBoth(done)

    # -- status ------------------------------------------------------------

    @Status.responder
    def status(self) -> dict[str, object]:
        return {
            "version": __version__,
            "uptime": self.factory.clock.seconds() - self.factory.started,
            **self.authority.counts(),
        }

    @Compact.responder
    async def compact(self) -> dict[str, int]:
        figures = await self._change("journal.compact", {}, _awaited(self.authority.compact()))
        self._audit(
            "journal.compact", "ok",
            records=f"{figures['records_before']}->{figures['records_after']}",
        )
        return figures

    # -- clients -----------------------------------------------------------

    def _client_row(self, client: Client) -> dict[str, Any]:
        return client_row(client, self.authority.live_token_count(client_id=client.id))

    @AddClient.responder
    async def add_client(self, name: str, **settings: Any) -> dict[str, object]:
        fields = _client_fields(settings)
        client, secret = await self._change(
            "client.add", {"name": name}, _call(self.authority.add_client, name, **fields),
        )
        self._audit("client.add", "ok", client=client.id, name=client.name)
        return {**self._client_row(client), "secret": secret}

    @ListClients.responder
    def list_clients(
        self, search: str | None, cursor: str | None, limit: int | None,
    ) -> dict[str, object]:
        def start() -> _Listing:
            needle = (search or "").lower()
            find = self.authority.find_client

            def row(client_id: str) -> dict[str, Any] | None:
                client = find(client_id)
                if client is None or not (
                    client.id.startswith(needle) or client.name.lower().startswith(needle)
                    or client.user.startswith(needle)
                ):
                    return None
                return self._client_row(client)

            return _Listing(b"ListClients", self.authority.client_ids(), _each(row))

        return self._page(b"ListClients", cursor, limit, start)

    @ShowClient.responder
    def show_client(self, id: str) -> dict[str, object]:
        return self._client_row(self.authority.client(id))

    @ModifyClient.responder
    async def modify_client(
        self, id: str, name: str | None, enabled: bool | None,
        regenerate_secret: bool | None, **settings: Any,
    ) -> dict[str, object]:
        changes = _client_fields(settings)
        if name is not None:
            changes["name"] = name
        if enabled is not None:
            changes["enabled"] = enabled

        async def work() -> tuple[Client, str, int]:
            before = self.authority.live_token_count(client_id=id)
            client, secret = await self.authority.update_client(
                id, bool(regenerate_secret), **changes
            )
            return client, secret, before - self.authority.live_token_count(client_id=id)

        client, secret, revoked = await self._change("client.update", {"client": id}, work())
        self._audit(
            "client.update", "ok", client=client.id, changed=",".join(sorted(changes)),
            new_secret="yes" if secret else "", revoked=revoked or "",
        )
        return {**self._client_row(client), "secret": secret, "revoked": revoked}

    @RemoveClient.responder
    async def remove_client(self, id: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            row = self._client_row(self.authority.client(id))
            await self.authority.remove_client(id)
            return row

        row = await self._change("client.remove", {"client": id}, work())
        self._audit("client.remove", "ok", client=id, revoked=row["tokens"])
        return {**row, "revoked": row["tokens"]}

    # -- users -------------------------------------------------------------

    def _user_row(self, user: User) -> dict[str, Any]:
        return user_row(user, self.authority.live_token_count(user=user.name))

    def _hash(self, password: str) -> Deferred[str]:
        if len(password) < MIN_PASSWORD:
            raise InvalidValue(f"passwords have at least {MIN_PASSWORD} characters")
        return self._until_disconnected(self.authority.hasher.hash(password))

    @AddUser.responder
    async def add_user(self, name: str, password: str | None, **settings: Any) -> dict[str, object]:
        fields = {key: value for key, value in settings.items() if value is not None}

        async def work() -> User:
            username = check_username(name)
            try:
                self.authority.user(username)
            except NotFound:
                pass
            else:
                raise Conflict(f"user {username} already exists")
            if password is not None:
                fields["password_hash"] = await self._hash(password)
            return await self.authority.add_user(username, "", **fields)

        user = await self._change("user.add", {"user": name}, work())
        self._audit("user.add", "ok", user=user.name, role=user.role)
        return self._user_row(user)

    @ListUsers.responder
    def list_users(
        self, search: str | None, cursor: str | None, limit: int | None,
    ) -> dict[str, object]:
        def start() -> _Listing:
            needle = (search or "").lower()
            find = self.authority.find_user

            def row(name: str) -> dict[str, Any] | None:
                user = find(name)
                if user is None or not (
                    name.startswith(needle) or user.email.lower().startswith(needle)
                    or user.full_name.lower().startswith(needle)
                ):
                    return None
                return self._user_row(user)

            return _Listing(b"ListUsers", self.authority.user_names(), _each(row))

        return self._page(b"ListUsers", cursor, limit, start)

    @ShowUser.responder
    def show_user(self, name: str) -> dict[str, object]:
        return self._user_row(self.authority.user(name))

    @SetPassword.responder
    async def set_password(self, name: str, password: str) -> dict[str, object]:
        async def work() -> User:
            self.authority.user(name)
            hashed = await self._hash(password)
            return await self.authority.update_user(name, password_hash=hashed)

        user = await self._change("user.password", {"user": name}, work())
        self._audit("user.password", "ok", user=user.name)
        return self._user_row(user)

    @ModifyUser.responder
    async def modify_user(self, name: str, disabled: bool | None, **settings: Any) -> dict[str, object]:
        changes = {key: value for key, value in settings.items() if value is not None}
        if disabled is not None:
            changes["disabled"] = disabled

        async def work() -> tuple[User, int]:
            before = self.authority.live_token_count(user=name)
            user = await self.authority.update_user(name, **changes)
            return user, before - self.authority.live_token_count(user=name)

        user, revoked = await self._change("user.update", {"user": name}, work())
        self._audit(
            "user.update", "ok", user=user.name, changed=",".join(sorted(changes)),
            revoked=revoked or "",
        )
        return {**self._user_row(user), "revoked": revoked}

    @RemoveUser.responder
    async def remove_user(self, name: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            row = self._user_row(self.authority.user(name))
            await self.authority.remove_user(name)
            return row

        row = await self._change("user.remove", {"user": name}, work())
        self._audit("user.remove", "ok", user=name, revoked=row["tokens"])
        return {**row, "revoked": row["tokens"]}

    # -- tokens ------------------------------------------------------------

    def _token_row(self, token: Token, now: int | None = None) -> dict[str, Any]:
        client = self.authority.find_client(token.client_id) if token.client_id else None
        return token_row(token, client.name if client else "", now or self.authority.now())

    @AddToken.responder
    async def add_token(
        self, label: str, scope: str, lifetime: int, user: str | None, client_id: str | None,
    ) -> dict[str, object]:
        secret, token = await self._change(
            "token.issue", {"user": user, "client": client_id},
            _call(
                self.authority.issue_admin_token, label=label, scope=scope, lifetime=lifetime,
                user=user or "", client_id=client_id or "",
            ),
        )
        self._audit(
            "token.issue", "ok", token=token.handle, kind=token.kind, user=token.user,
            client=token.client_id, scope=token.scope, via="control",
        )
        return {**self._token_row(token), "secret": secret}

    @ListTokens.responder
    def list_tokens(
        self, search: str | None, cursor: str | None, limit: int | None, expired: bool | None,
    ) -> dict[str, object]:
        def start() -> _Listing:
            needle = search or ""
            include_expired = bool(expired)
            authority = self.authority
            key = _secret_key(needle)
            if key is not None:
                keys, needle = [key], ""
            else:
                keys = authority.token_keys()

            def rows(chunk: list[int]) -> list[dict[str, Any] | None]:
                now = authority.now()
                matches = authority.token_matches
                return [
                    self._token_row(token, now)
                    if token is not None and matches(token, needle) else None
                    for token in authority.held_tokens(chunk, include_expired)
                ]

            return _Listing(b"ListTokens", keys, rows)

        return self._page(b"ListTokens", cursor, limit, start)

    def _find_token(self, reference: str) -> Token:
        reference = reference.strip()
        token = self.authority.find_token(reference)
        if token is None:
            # Never echo what may be a mistyped secret.
            if tokens.is_handle(reference):
                raise NotFound(f"no such token: {reference}")
            raise NotFound("no such token: no live token has that handle, secret or session id")
        return token

    @ShowToken.responder
    def show_token(self, reference: str) -> dict[str, object]:
        return self._token_row(self._find_token(reference))

    @RemoveToken.responder
    async def remove_token(self, reference: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            token = self._find_token(reference)
            row = self._token_row(token)
            row["revoked"] = self.authority.revocation_count(token)
            await self.authority.revoke(token)
            return row

        row = await self._change("token.revoke", {}, work())
        self._audit("token.revoke", "ok", token=row["handle"], revoked=row["revoked"], via="control")
        return row

    # -- paging ------------------------------------------------------------

    def _page(
        self, command: bytes, cursor: str | None, limit: int | None,
        start: Callable[[], _Listing],
    ) -> dict[str, object]:
        """
        One page of a listing: the first (a new snapshot) without a cursor,
        else the one the cursor names.

        @return: the page's response: its rows as JSON, and the cursor of
            the next page, C{""} after the last.
        """
        rows_wanted = _page_limit(limit)
        if not cursor:
            number = self._next_listing
            self._next_listing += 1
            listing = start()
            self._listings[number] = listing
            while len(self._listings) > MAX_LISTINGS:
                del self._listings[min(self._listings)]
            position = 0
        else:
            number, position = _parse_cursor(cursor)
            found = self._listings.get(number)
            if found is None or found.command != command or position > len(found.keys):
                raise InvalidValue("unknown or expired cursor; start the listing again")
            listing = found
        rows: list[str] = []
        size = 2
        keys = listing.keys
        end = min(len(keys), position + SCAN_LIMIT)
        full = False
        while position < end and not full:
            chunk = keys[position:min(end, position + _CHUNK)]
            for row in listing.rows(chunk):
                if row is not None:
                    text = _json(row)
                    if len(text) + 1 > PAGE_BYTES - 2 and row.get("redirect_uris"):
                        # Only a client with very many long redirect URIs can
                        # outgrow a page; list it without them (show has them).
                        row["redirect_uris"] = []
                        text = _json(row)
                    if size + len(text) + 1 > PAGE_BYTES and rows:
                        full = True
                        break
                    rows.append(text)
                    size += len(text) + 1
                position += 1
                if len(rows) >= rows_wanted:
                    full = True
                    break
        page = "[" + ",".join(rows) + "]"
        if position >= len(keys):
            del self._listings[number]
            return {"rows": page, "cursor": ""}
        return {"rows": page, "cursor": f"{number}.{position}"}


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(row: dict[str, Any]) -> str:
    """
    A row as compact, ASCII-only JSON (so its length is its size in bytes).
    """
    text: str = _encode(row)
    return text


def _each(
    row: Callable[[Any], dict[str, Any] | None],
) -> Callable[[list[Any]], list[dict[str, Any] | None]]:
    return lambda chunk: [row(key) for key in chunk]


def _parse_cursor(cursor: str) -> tuple[int, int]:
    number, dot, position = cursor.partition(".")
    if not (dot and cursor.isascii() and number.isdigit() and position.isdigit() and len(cursor) < 40):
        raise InvalidValue("unknown or expired cursor; start the listing again")
    return int(number), int(position)


def _secret_key(search: str) -> int | None:
    """
    The token key a search names exactly (a token or a session id), if any.
    """
    key = tokens.key_from_session_id(search)
    if key is None and (tokens.is_access_token(search) or tokens.is_app_password(search)):
        key = tokens.token_key(search)
    return key


def _client_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """
    The L{Client} fields named by a command's optional client settings.
    """
    fields: dict[str, Any] = {}
    for name, value in settings.items():
        if value is None:
            continue
        if name == "public":
            fields["type"] = "public" if value else "confidential"
        elif name in ("grant_types", "redirect_uris"):
            fields[name] = tuple(value)
        else:
            fields[name] = value
    if len(fields.get("redirect_uris", ())) > MAX_REDIRECT_URIS:
        raise InvalidValue(f"a client has at most {MAX_REDIRECT_URIS} redirect URIs")
    return fields


async def _call(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """
    Call C{f} and await its result: errors raised at once and errors in the
    Deferred arrive the same way.
    """
    return await f(*args, **kwargs)


async def _awaited(d: Deferred[T]) -> T:
    return await d


_TYPE_NAMES = {
    amp.Unicode: "text",
    amp.Integer: "a 32-bit integer",
    amp.Boolean: "True or False",
    amp.ListOf: "a list",
}


def _check_arguments(command: type[amp.Command], box: amp.AmpBox, protocol: amp.AMP) -> None:
    """
    @raise amp.RemoteAmpError: C{BAD_ARGUMENT}, naming the first argument of
        C{box} that is missing or does not parse as its declared type (never
        echoing its value, which may be a password).
    """
    for name, argument in command.arguments:
        value = box.get(name)
        what = name.decode("ascii")
        if value is None:
            if argument.optional:
                continue
            raise amp.RemoteAmpError(b"BAD_ARGUMENT", f"missing argument {what}")
        try:
            parsed = argument.fromStringProto(value, protocol)
        except Exception:
            parsed = _INVALID
        if isinstance(argument, amp.Integer) and parsed is not _INVALID and parsed not in INT_RANGE:
            parsed = _INVALID
        if parsed is _INVALID:
            kind = next((n for t, n in _TYPE_NAMES.items() if isinstance(argument, t)), "valid")
            raise amp.RemoteAmpError(b"BAD_ARGUMENT", f"argument {what} must be {kind}")


_INVALID = object()


class ControlFactory(Factory):
    """
    Builds one L{ControlProtocol} per admin connection.

    @ivar allowed_uids: uids admitted: root, the daemon's own and any
        configured.
    @ivar admin_gid: a group whose members are admitted, if any.
    """

    def __init__(
        self,
        clock: IReactorTime,
        authority: Authority,
        allowed_uids: Collection[int] = (),
        admin_gid: int | None = None,
        peer_credentials: Callable[[ITransport], PeerCredentials | None] = socket_peer_credentials,
    ) -> None:
        self.clock = clock
        self.authority = authority
        self.started = clock.seconds()
        self.allowed_uids = frozenset({0, os.getuid(), *allowed_uids})
        self.admin_gid = admin_gid
        self.peer_credentials = peer_credentials

    def buildProtocol(self, addr: object) -> ControlProtocol:  # type: ignore[override]
        protocol = ControlProtocol()
        protocol.factory = self
        return protocol

    def allows(self, creds: PeerCredentials) -> bool:
        """
        Whether C{creds} may administer the daemon: root, the daemon's own
        uid, a configured uid, or a process whose primary or supplementary
        group is the admin group.
        """
        if creds.uid in self.allowed_uids:
            return True
        if self.admin_gid is None:
            return False
        return creds.gid == self.admin_gid or self.admin_gid in creds.groups


# ---------------------------------------------------------------------------
# Listening.


@contextmanager
def private_umask() -> Iterator[None]:
    """
    Create files under a 0177 umask (owner read and write only) meanwhile.
    The umask is process-wide, but only ever made stricter here.
    """
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


class ControlService(StreamServerEndpointService):
    """
    The control listener: binds its UNIX socket under L{private_umask}, so
    there is no moment between bind() and the endpoint's chmod() at which
    the socket has looser permissions than 0600; fails to start loudly.
    """

    _raiseSynchronously = True

    def privilegedStartService(self) -> None:
        with private_umask():
            super().privilegedStartService()


def control_service(description: str, factory: ControlFactory, reactor: Any) -> ControlService:
    """
    The service listening on C{description} (a Twisted endpoint string) for
    admin connections. For a UNIX socket, a missing parent directory is made
    0700; an existing one that others can enter is logged as a warning.
    """
    path = unix_path(description)
    if path is not None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        elif stat.S_IMODE(os.stat(parent).st_mode) & 0o077:
            log.warn(
                "control socket directory {directory} is open to others (mode {mode:o}); "
                "make it 0700", directory=parent, mode=stat.S_IMODE(os.stat(parent).st_mode),
            )
        remove_stale_socket(path)
    return ControlService(serverFromString(reactor, description), factory)


def remove_stale_socket(path: str) -> None:
    """
    Remove a socket file a crashed daemon left behind, which would otherwise
    make every restart fail with "address already in use". Only a socket
    nobody listens on is removed (connecting to it is refused).
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            log.info("removed the stale control socket {path}", path=path)
        except OSError:
            pass


__all__ = [
    "ControlFactory", "ControlProtocol", "ControlService",
    "PeerCredentials", "control_service", "resolve_group",
    "socket_peer_credentials", "wire_error",
]
