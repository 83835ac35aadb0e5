# -*- test-case-name: tests.test_ctl -*-
"""
C{oauthctl}: administer a running oauthd over its control socket.

The commands mirror PhotoPrism's C{photoprism clients} and C{photoprism auth}
(and add C{users}, C{status}, C{compact} and the offline C{repair}). Output is
aligned tables for people and, with C{--json}, JSON for programs. Exit status
0 on success, 1 on an error (one line on stderr), 2 on a usage error.

The client is synchronous: a command-line tool may block, and it speaks AMP
by driving Twisted's own AMP protocol object over a plain socket, so no
reactor is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import getpass as getpass_module
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn

from attrs import asdict, define, field

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.address import UNIXAddress
from twisted.protocols import amp
from twisted.python.failure import Failure

from oauthd import __version__
from oauthd.control import wire
from oauthd.control.wire import SOCKET_NAME, default_data_dir, unix_path

__all__ = ["main"]

DEFAULT_TOKEN_LIFETIME = 365 * 86400
"""
C{auth add}'s default lifetime, as PhotoPrism's: one year.
"""


class CtlError(Exception):
    """
    The command failed; the message is one line for stderr.
    """


class UsageError(Exception):
    """
    The command line is wrong (exit status 2).
    """


@define
class Terminal:
    """
    Where a command reads and writes; replaced in tests.
    """

    stdin: IO[str] = field(factory=lambda: sys.stdin)
    stdout: IO[str] = field(factory=lambda: sys.stdout)
    stderr: IO[str] = field(factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(factory=lambda: os.environ)
    getpass: Callable[[str], str] = getpass_module.getpass

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")


# ---------------------------------------------------------------------------
# Finding and talking to the daemon.


def socket_path(option: str | None, environ: Mapping[str, str]) -> str:
    """
    The control socket: C{--socket}, then C{$OAUTHD_SOCKET}, then the
    daemon's default (C{control.sock} in its default data directory). A
    C{unix:PATH[:options]} endpoint string is accepted too.
    """
    path = option or environ.get("OAUTHD_SOCKET") or os.path.join(
        default_data_dir(environ), SOCKET_NAME
    )
    unix = unix_path(path)
    return path if unix is None else unix


def _why(error: OSError) -> str:
    reasons = {
        errno.ENOENT: "no such file (is oauthd running? use --socket or $OAUTHD_SOCKET)",
        errno.ENOTDIR: "no such file (a parent is not a directory)",
        errno.EACCES: "permission denied (run as root or as the daemon's user)",
        errno.EPERM: "permission denied (run as root or as the daemon's user)",
        errno.ECONNREFUSED: "connection refused (is oauthd running?)",
        errno.ENOTSOCK: "not a socket",
    }
    return reasons.get(error.errno or 0, error.strerror or str(error))


def connect(path: str) -> Connection:
    """
    Connect to the control socket at C{path}.

    @raise CtlError: naming the path and why it cannot be used.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CtlError(f"cannot connect to {path}: {_why(e)}") from None
    if not stat.S_ISSOCK(mode):
        raise CtlError(f"cannot connect to {path}: not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        if "too long" in str(e):
            raise CtlError(f"cannot connect to {path}: the path is too long for a socket") from None
        raise CtlError(f"cannot connect to {path}: {_why(e)}") from None
    return Connection(sock, path)


class _SocketTransport:
    """
    The little of a transport that L{amp.AMP} uses, over a blocking socket.
    """

    disconnecting = False

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock = sock
        self._address = UNIXAddress(path)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self._sock.sendall(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._sock.close()

    def getPeer(self) -> UNIXAddress:
        return self._address

    def getHost(self) -> UNIXAddress:
        return self._address


class Connection:
    """
    A synchronous AMP client: each L{call} sends one command and reads until
    its answer arrives.
    """

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock = sock
        self.path = path
        self._answered = False
        self._protocol = amp.AMP()
        self._protocol.makeConnection(_SocketTransport(sock, path))

    def close(self) -> None:
        self._sock.close()

    def call(self, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
        """
        Run C{command} on the daemon.

        @raise CtlError: with the daemon's one-line error, or saying the
            connection was lost.
        """
        results: list[object] = []
        try:
            d = self._protocol.callRemote(command, **arguments)
        except amp.TooLong:
            raise CtlError("a value is too long for the control protocol (over 65,535 bytes)") from None
        except OSError as e:
            raise self._lost(e) from None
        d.addBoth(results.append)
        while not results:
            try:
                data = self._sock.recv(65536)
            except OSError as e:
                data = b""
                reason: Exception = e
            else:
                reason = ConnectionDone()
            if not data:
                self._protocol.connectionLost(Failure(reason))
                break
            self._protocol.dataReceived(data)
        result = results[0] if results else Failure(ConnectionDone())
        if isinstance(result, Failure):
            raise self._error(result.value or ConnectionDone(), command) from None
        self._answered = True
        assert isinstance(result, dict)
        return result

    def _lost(self, error: BaseException) -> CtlError:
        if not self._answered:
            return CtlError(
                f"{self.path}: the daemon closed the connection (is uid {os.getuid()}"
                " allowed to administer it? see admin_uids and admin_group)"
            )
        return CtlError(f"{self.path}: lost the connection to the daemon")

    def _error(self, error: BaseException, command: type[amp.Command]) -> CtlError:
        if isinstance(error, wire.ControlError):
            return CtlError(str(error))
        if isinstance(error, amp.UnhandledCommand):
            name = command.commandName.decode("ascii")
            return CtlError(f"the daemon does not know the command {name} (is it an older oauthd?)")
        if isinstance(error, (ConnectionDone, ConnectionLost, OSError)):
            return self._lost(error)
        return CtlError(f"the daemon failed to run the command: {error}")

    def pages(
        self, command: type[amp.Command], limit: int = 0, **arguments: Any,
    ) -> Iterator[dict[str, Any]]:
        """
        The rows of a paged listing, following its cursor to the end (or
        to C{limit} rows, if not 0).
        """
        cursor = ""
        count = 0
        while True:
            wanted = wire.PAGE_ROWS if not limit else min(wire.PAGE_ROWS, limit - count)
            page = self.call(command, cursor=cursor or None, limit=wanted, **arguments)
            for row in json.loads(page["rows"]):
                yield row
                count += 1
            cursor = page["cursor"]
            if not cursor or (limit and count >= limit):
                return


# ---------------------------------------------------------------------------
# Output.


@functools.lru_cache(maxsize=4096)
def utc(timestamp: int) -> str:
    """
    A time for tables: UTC, to the second; C{never} for 0.
    """
    if not timestamp:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def duration(seconds: float) -> str:
    """
    C{3d4h}, C{1h30m}, C{45s}: the two largest units.
    """
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """
    Columns aligned on the widest cell, two spaces apart.
    """
    cells = [[str(c) for c in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    """
    A value as table text: anything unprintable (a terminal escape in a
    name) shown as C{?}.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def fields_table(pairs: Sequence[tuple[str, object]]) -> str:
    return table(["Name", "Value"], pairs)


def boxed(headers: Sequence[str], row: Sequence[str]) -> str:
    """
    A bordered one-row table, as PhotoPrism prints a secret.
    """
    widths = [max(len(h), len(c)) for h, c in zip(headers, row)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths)) + "|"

    return "\n".join([rule, line(headers), rule, line(row), rule])


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


KIND_NAMES = {
    "access": "Access Token",
    "app": "App Password",
    "refresh": "Refresh Token",
    "refresh-used": "Refresh Token (used)",
    "session": "Session",
}


def kind_name(row: Mapping[str, Any]) -> str:
    if row["kind"] == "access" and row["client_id"]:
        return "Client (OAuth2)"
    kind: str = row["kind"]
    return KIND_NAMES.get(kind, kind)


def client_lifetime(row: Mapping[str, Any]) -> str:
    limit = "no token limit" if row["max_tokens"] < 0 else f"up to {row['max_tokens']} tokens"
    return f"{duration(row['access_ttl'])}; {limit}"


SHOWN: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "access_ttl": client_lifetime,
    "refresh_ttl": lambda row: duration(row["refresh_ttl"]),
    "created_at": lambda row: utc(row["created_at"]),
    "issued_at": lambda row: utc(row["issued_at"]),
    "expires_at": lambda row: utc(row["expires_at"]),
    "disabled": lambda row: yes_no(not row["disabled"]),
    "has_password": lambda row: "set" if row["has_password"] else "none",
    "kind": kind_name,
}
"""
How tables show the fields that are not shown as they are (a list as
words, a boolean as yes or no).
"""


def shown(field: wire.Field, row: Mapping[str, Any]) -> object:
    """
    C{row}'s C{field} as a table shows it.
    """
    special = SHOWN.get(field.name)
    if special is not None:
        return special(row)
    value = row[field.name]
    if isinstance(field.argument, amp.ListOf):
        return " ".join(value)
    if isinstance(field.argument, amp.Boolean):
        return yes_no(value)
    return value


def detail(entity: wire.Entity, row: Mapping[str, Any]) -> list[tuple[str, object]]:
    """
    One client, user or token as the name and value of each field its
    description shows.
    """
    return [(entity[name].label, shown(entity[name], row)) for name in entity.detail]


def listing(entity: wire.Entity, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """
    Rows as a table of the fields C{names}.
    """
    fields = [entity[name] for name in names]
    return table([field.label for field in fields], [[shown(f, row) for f in fields] for row in rows])


# ---------------------------------------------------------------------------
# Input.


def read_password(args: argparse.Namespace, term: Terminal) -> str:
    """
    The new password: the first line of stdin with C{--password-stdin}, else
    asked twice at the terminal.
    """
    if args.password_stdin:
        password = term.stdin.readline().rstrip("\r\n")
        if not password:
            raise CtlError("no password on standard input")
        return password
    if not term.stdin.isatty():
        raise CtlError("no terminal to ask for the password; use --password-stdin")
    password = term.getpass("Password: ")
    if not password:
        raise CtlError("no password given")
    if term.getpass("Repeat password: ") != password:
        raise CtlError("the passwords do not match")
    return password


def confirm(args: argparse.Namespace, term: Terminal, question: str) -> None:
    """
    Ask C{question}; anything but yes stops the command.
    """
    if args.yes:
        return
    term.stderr.write(f"{question} [y/N] ")
    term.stderr.flush()
    line = term.stdin.readline()
    if not line.endswith("\n"):
        term.stderr.write("\n")
    if line.strip().lower() not in ("y", "yes"):
        raise CtlError("nothing was changed")


def lifetime(text: str) -> int:
    """
    An argparse type: seconds, with -1 or 0 meaning never (stored as 0).
    """
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if seconds < -1:
        raise argparse.ArgumentTypeError("a lifetime is seconds, or -1 or 0 for never")
    return max(seconds, 0)


def seconds_type(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("must be at least 1 second")
    return seconds


def token_limit(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


# ---------------------------------------------------------------------------
# Commands. Each takes the parsed arguments, the terminal and a way to get a
# connection, and prints its result (JSON or human).


Connect = Callable[[], Connection]


def emit(args: argparse.Namespace, term: Terminal, data: object, human: Callable[[], str]) -> None:
    """
    Print C{data} as JSON with C{--json}, else what C{human} makes of it. A
    list is printed one compact row a line (the indenting encoder is pure
    Python and would take seconds over 100,000 rows).
    """
    if not args.json:
        term.print(human())
    elif isinstance(data, list):
        encode = json.JSONEncoder(ensure_ascii=False).encode
        term.print("[\n" + ",\n".join(encode(row) for row in data) + "\n]" if data else "[]")
    else:
        term.print(json.dumps(data, indent=2, ensure_ascii=False))


def cmd_status(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    status = connect().call(wire.Status)
    records = status["journal_records"]
    status["live_fraction"] = round(status["live_records"] / records, 4) if records else 1.0

    def human() -> str:
        return fields_table([
            ("Version", status["version"]),
            ("Uptime", duration(status["uptime"])),
            ("Clients", status["clients"]),
            ("Users", status["users"]),
            ("Live Tokens", status["tokens"]),
            ("Journal", f"{size(status['journal_bytes'])}, {records} records"),
            ("Live Fraction", f"{status['live_fraction']:.0%} ({status['live_records']} live records)"),
        ])

    emit(args, term, status, human)


def cmd_compact(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    result = connect().call(wire.Compact)
    emit(args, term, result, lambda: (
        f"Compacted the journal: {result['records_before']} -> {result['records_after']} records, "
        f"{size(result['bytes_before'])} -> {size(result['bytes_after'])}."
    ))


def cmd_repair(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    from oauthd.eventlog.journal import JournalError, repair

    try:
        report = repair(args.data, now=time.time())
    except (JournalError, OSError) as e:
        raise CtlError(" ".join(str(e).split())) from None
    emit(args, term, asdict(report), report.describe)


def settings(entity: wire.Entity, args: argparse.Namespace) -> dict[str, Any]:
    """
    What the command line sets of C{entity}'s settable fields (each an
    option whose destination is the field's name), C{None} for the rest.
    """
    return {field.name: getattr(args, field.name) for field in entity.fields if field.settable}


def client_settings(args: argparse.Namespace) -> dict[str, Any]:
    found = settings(wire.CLIENT, args)
    if args.public:
        found["public"] = True
    return found


def print_client_secret(term: Terminal, row: Mapping[str, Any], new: bool) -> None:
    if not row["secret"]:
        return
    what = "NEW CLIENT SECRET" if new else "CLIENT SECRET"
    term.print()
    term.print(
        f"PLEASE WRITE DOWN THE FOLLOWING RANDOMLY GENERATED {what}, "
        "AS YOU WILL NOT BE ABLE TO SEE IT AGAIN:"
    )
    term.print()
    term.print(boxed(["Client ID", "Client Secret"], [row["id"], row["secret"]]))


def cmd_clients_add(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.AddClient, name=args.name, **client_settings(args))
    if args.json:
        emit(args, term, row, str)
        return
    term.print(fields_table(detail(wire.CLIENT, row)))
    if not row["secret"]:
        term.print()
        term.print("This is a public client: it has no secret.")
    print_client_secret(term, row, new=False)


CLIENT_COLUMNS = (
    "id", "name", "type", "user", "role", "scope", "enabled", "access_ttl", "tokens", "created_at",
)


def cmd_clients_ls(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    rows = list(connect().pages(wire.ListClients, args.limit, search=args.search))
    emit(args, term, rows, lambda: listing(wire.CLIENT, CLIENT_COLUMNS, rows))


def cmd_clients_show(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.ShowClient, id=args.id)
    emit(args, term, row, lambda: fields_table(detail(wire.CLIENT, row)))


def cmd_clients_mod(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    changes = client_settings(args)
    if args.confidential:
        changes["public"] = False
    if args.no_redirect_uris:
        changes["redirect_uris"] = []
    changes["name"] = args.name
    changes["enabled"] = args.enabled
    changes["regenerate_secret"] = args.regenerate_secret or None
    if all(value is None for value in changes.values()):
        raise UsageError("oauthctl clients mod: error: nothing to change (see --help)")
    row = connect().call(wire.ModifyClient, id=args.id, **changes)
    if args.json:
        emit(args, term, row, str)
        return
    term.print(fields_table(detail(wire.CLIENT, row)))
    if row["revoked"]:
        term.print()
        term.print(f"Revoked {row['revoked']} tokens of the disabled client.")
    print_client_secret(term, row, new=True)


def cmd_clients_rm(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    confirm(args, term, f"Delete client {args.id} and revoke all its tokens?")
    row = connect().call(wire.RemoveClient, id=args.id)
    emit(args, term, row, lambda: (
        f"Deleted client {row['id']} ({row['name']}); revoked {row['revoked']} tokens."
    ))


def cmd_users_add(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    password = read_password(args, term)
    row = connect().call(wire.AddUser, name=args.name, password=password, **settings(wire.USER, args))
    emit(args, term, row, lambda: fields_table(detail(wire.USER, row)))


def cmd_users_ls(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    rows = list(connect().pages(wire.ListUsers, args.limit, search=args.search))
    emit(args, term, rows, lambda: listing(wire.USER, wire.USER.detail, rows))


def cmd_users_show(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.ShowUser, name=args.name)
    emit(args, term, row, lambda: fields_table(detail(wire.USER, row)))


def cmd_users_passwd(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    password = read_password(args, term)
    row = connect().call(wire.SetPassword, name=args.name, password=password)
    emit(args, term, row, lambda: f"Changed the password of {row['name']}.")


def cmd_users_mod(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    changes = {
        **settings(wire.USER, args), "disabled": None if args.enabled is None else not args.enabled,
    }
    if all(value is None for value in changes.values()):
        raise UsageError("oauthctl users mod: error: nothing to change (see --help)")
    row = connect().call(wire.ModifyUser, name=args.name, **changes)

    def human() -> str:
        text = fields_table(detail(wire.USER, row))
        if row["revoked"]:
            text += f"\n\nRevoked {row['revoked']} tokens of the disabled user."
        return text

    emit(args, term, row, human)


def cmd_users_rm(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    confirm(args, term, f"Delete user {args.name} and revoke all their tokens?")
    row = connect().call(wire.RemoveUser, name=args.name)
    emit(args, term, row, lambda: f"Deleted user {row['name']}; revoked {row['revoked']} tokens.")


def cmd_auth_add(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(
        wire.AddToken, label=args.name, scope=args.scope, lifetime=args.expires,
        user=args.user, client_id=args.client,
    )
    if args.json:
        emit(args, term, row, str)
        return
    what = "APP PASSWORD" if row["kind"] == "app" else "ACCESS TOKEN"
    owner = f" for user {row['user']}" if row["user"] else (
        f" for client {row['client_id']}" if row["client_id"] else ""
    )
    term.print(f"Issued {row['handle']}{owner}, expires: {utc(row['expires_at'])}.")
    term.print()
    term.print(
        f"PLEASE COPY THE FOLLOWING RANDOMLY GENERATED {what} AND KEEP IT IN A SAFE PLACE, "
        "AS YOU WILL NOT BE ABLE TO SEE IT AGAIN:"
    )
    term.print()
    term.print(boxed([what.title(), "Authorization Scope"], [row["secret"], row["scope"]]))


def cmd_auth_ls(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    rows = list(connect().pages(
        wire.ListTokens, args.limit, search=args.search, expired=args.expired or None,
    ))
    emit(args, term, rows, lambda: table(
        ["Session ID", "User", "Kind", "Client", "Name", "Scope", "Created At (UTC)",
         "Expires At (UTC)"],
        [[r["handle"], r["user"], kind_name(r), r["client_name"] or r["client_id"], r["label"],
          r["scope"], utc(r["issued_at"]),
          utc(r["expires_at"]) + (" (expired)" if r["expired"] else "")] for r in rows],
    ))


def cmd_auth_show(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.ShowToken, reference=args.token)
    emit(args, term, row, lambda: fields_table(detail(wire.TOKEN, row)))


def cmd_auth_rm(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.RemoveToken, reference=args.token)

    def human() -> str:
        others = row["revoked"] - 1
        extra = f" and {others} other tokens of its grant" if others > 0 else ""
        return f"Revoked {row['handle']}{extra}."

    emit(args, term, row, human)


# ---------------------------------------------------------------------------
# The command line.


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print JSON instead of tables",
    )
    common.add_argument(
        "--socket", metavar="PATH", default=argparse.SUPPRESS,
        help="the control socket [default: $OAUTHD_SOCKET, else "
        "$STATE_DIRECTORY/control.sock or ./oauthd-data/control.sock]",
    )
    parser = _Parser(
        prog="oauthctl", parents=[common],
        description="Administer a running oauthd over its control socket.",
        epilog="Exit status: 0 success, 1 error, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"oauthctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: Any, name: str, handler: Callable[..., None], help: str, aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help, description=help, aliases=list(aliases),
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help: str, aliases: Sequence[str] = ()) -> Any:
        sub = commands.add_parser(
            name, parents=[common], help=help, description=help, aliases=list(aliases),
        )
        return sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    command(commands, "status", cmd_status, "show the daemon's version, uptime and counts")
    command(commands, "compact", cmd_compact, "rewrite the journal as the live state, now")
    repair = command(
        commands, "repair", cmd_repair,
        "offline, with oauthd stopped: rewrite a damaged journal with every verifiable record",
    )
    repair.add_argument("--data", metavar="DIR", required=True, help="the data directory")

    def client_options(sub: argparse.ArgumentParser, adding: bool) -> None:
        sub.add_argument("--name", required=adding, help="the client's name")
        sub.add_argument("--scope", help="scopes it may be granted" + (" [default: *]" if adding else ""))
        sub.add_argument(
            "--grant", dest="grant_types", action="append", metavar="GRANT",
            help="a grant type it may use; repeat for several "
            + ("[default: client_credentials]" if adding else "(replaces the list)"),
        )
        sub.add_argument(
            "--expires", dest="access_ttl", type=seconds_type, metavar="SECONDS",
            help="access token lifetime" + (" [default: 3600]" if adding else ""),
        )
        sub.add_argument(
            "--refresh-expires", dest="refresh_ttl", type=seconds_type, metavar="SECONDS",
            help="refresh token lifetime" + (" [default: 30 days]" if adding else ""),
        )
        sub.add_argument(
            "--tokens", dest="max_tokens", type=token_limit, metavar="N",
            help="most live access tokens at once, -1 for no limit" + (" [default: 10]" if adding else ""),
        )
        sub.add_argument(
            "--redirect-uri", dest="redirect_uris", action="append", metavar="URI",
            help="an allowed redirect URI; repeat for several" + ("" if adding else " (replaces the list)"),
        )
        sub.add_argument("--user", metavar="NAME", help="the user who owns it" + ("" if adding else " ('' for none)"))
        sub.add_argument("--role", choices=["client", "admin"], help="its role" + (" [default: client]" if adding else ""))

    clients = group("clients", "register and manage OAuth clients", ["client"])
    sub = command(clients, "add", cmd_clients_add, "register a client and print its secret once")
    client_options(sub, adding=True)
    sub.add_argument("--public", action="store_true", default=None, help="a public client (no secret)")
    sub = command(clients, "ls", cmd_clients_ls, "list clients", ["list"])
    sub.add_argument("search", nargs="?", help="a prefix of the id, name or owner")
    sub.add_argument("-n", "--limit", type=int, default=0, help="show at most N [default: all]")
    sub = command(clients, "show", cmd_clients_show, "show one client")
    sub.add_argument("id")
    sub = command(clients, "mod", cmd_clients_mod, "change a client")
    sub.add_argument("id")
    client_options(sub, adding=False)
    kind = sub.add_mutually_exclusive_group()
    kind.add_argument("--public", action="store_true", default=None, help="make it public (drops its secret)")
    kind.add_argument("--confidential", action="store_true", help="make it confidential (gives it a secret)")
    sub.add_argument("--no-redirect-uris", action="store_true", help="remove every redirect URI")
    state = sub.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false", help="disable it and revoke its tokens")
    sub.add_argument("--regenerate-secret", action="store_true", help="issue a new secret (shown once)")
    sub = command(clients, "rm", cmd_clients_rm, "delete a client and revoke its tokens")
    sub.add_argument("id")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    users = group("users", "create and manage users", ["user"])
    sub = command(users, "add", cmd_users_add, "create a user (asks for the password)")
    sub.add_argument("name")
    sub.add_argument("--role", choices=["admin", "user"], help="[default: user]")
    sub.add_argument("--email")
    sub.add_argument("--full-name")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub = command(users, "ls", cmd_users_ls, "list users", ["list"])
    sub.add_argument("search", nargs="?", help="a prefix of the name, email or full name")
    sub.add_argument("-n", "--limit", type=int, default=0, help="show at most N [default: all]")
    sub = command(users, "show", cmd_users_show, "show one user")
    sub.add_argument("name")
    sub = command(users, "passwd", cmd_users_passwd, "set a user's password")
    sub.add_argument("name")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub = command(users, "mod", cmd_users_mod, "change a user")
    sub.add_argument("name")
    sub.add_argument("--role", choices=["admin", "user"])
    sub.add_argument("--email", help="'' for none")
    sub.add_argument("--full-name", help="'' for none")
    state = sub.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false", help="disable and revoke their tokens")
    sub = command(users, "rm", cmd_users_rm, "delete a user and revoke their tokens")
    sub.add_argument("name")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    auth = group("auth", "issue, list and revoke tokens", ["sess"])
    sub = command(
        auth, "add", cmd_auth_add,
        "issue an access token (or, for a user, an app password) and print it once",
    )
    owner = sub.add_mutually_exclusive_group()
    owner.add_argument("--user", metavar="NAME", help="issue an app password for this user")
    owner.add_argument("--client", metavar="ID", help="bind the access token to this client")
    sub.add_argument("--name", required=True, metavar="LABEL", help="what the token is for")
    sub.add_argument("--scope", required=True, help="its scope, e.g. '*' or 'photos albums'")
    sub.add_argument(
        "--expires", type=lifetime, default=DEFAULT_TOKEN_LIFETIME, metavar="SECONDS",
        help="lifetime; -1 or 0 for never [default: one year]",
    )
    sub = command(auth, "ls", cmd_auth_ls, "list tokens (by handle; never their values)", ["list"])
    sub.add_argument("search", nargs="?", help="a prefix of the handle, client, user or name; or a token")
    sub.add_argument("--expired", action="store_true", help="include expired tokens not yet swept")
    sub.add_argument("-n", "--limit", type=int, default=0, help="show at most N [default: all]")
    sub = command(auth, "show", cmd_auth_show, "show one token")
    sub.add_argument("token", metavar="HANDLE|TOKEN")
    sub = command(auth, "rm", cmd_auth_rm, "revoke a token at once")
    sub.add_argument("token", metavar="HANDLE|TOKEN")
    return parser


def main(argv: Sequence[str] | None = None, term: Terminal | None = None) -> int:
    """
    Run C{oauthctl} with C{argv} (default: the process's arguments).

    @return: the exit status.
    """
    term = term or Terminal()
    parser = build_parser()
    connection: list[Connection] = []
    try:
        with contextlib.redirect_stdout(term.stdout), contextlib.redirect_stderr(term.stderr):
            try:
                args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
            except SystemExit as e:  # --help, --version
                return int(e.code or 0)
        args.json = getattr(args, "json", False)
        path = socket_path(getattr(args, "socket", None), term.environ)

        def connected() -> Connection:
            if not connection:
                connection.append(connect(path))
            return connection[0]

        args.handler(args, term, connected)
    except UsageError as e:
        term.stderr.write(f"{e}\n")
        return 2
    except CtlError as e:
        term.stderr.write(f"oauthctl: {e}\n")
        return 1
    except KeyboardInterrupt:
        term.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # The reader went away (oauthctl auth ls | head): stop quietly, and
        # keep Python from complaining as it flushes stdout at exit.
        if term.stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        for c in connection:
            c.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
