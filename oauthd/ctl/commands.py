"""
oauthctl's commands. Each takes the parsed arguments, the terminal and a
way to get a connection, and prints its result (JSON or human).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from oauthd.control import wire
from oauthd.ctl.connection import Connection, CtlError
from oauthd.ctl.output import (
    Terminal,
    boxed,
    detail,
    duration,
    emit,
    fields_table,
    kind_name,
    listing,
    size,
    table,
    utc,
)


class UsageError(Exception):
    """
    The command line is wrong (exit status 2).
    """


Connect = Callable[[], Connection]
"""
How a command gets its connection (made on first use, so that a command
that fails before it needs the daemon never connects).
"""


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
            *_log_rows(status),
        ])

    emit(args, term, status, human)


def _log_rows(status: dict[str, Any]) -> list[tuple[str, object]]:
    """
    Where this node is in the event log; on a shared one, its id and lag.
    """
    rows: list[tuple[str, object]] = []
    if status["node"]:
        rows.append(("Node", status["node"]))
    rows.append(("Position", status["position"]))
    if status.get("lag") is not None:
        rows.append(("Lag", f"{status['lag']:.3f} s"))
    rows.append(("State Digest", status["state_digest"]))
    return rows


def cmd_compact(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    result = connect().call(wire.Compact)
    emit(args, term, result, lambda: (
        f"Compacted the journal: {result['records_before']} -> {result['records_after']} records, "
        f"{size(result['bytes_before'])} -> {size(result['bytes_after'])}."
    ))


REPAIR = "oauthd.eventlog.repair"
"""
The module that repairs a journal, run as C{python -m REPAIR DIR}: it prints
one line of JSON, the repair's report and its C{description} (exit status
0), or C{{"error": ...}} (exit status 1).
"""


def cmd_repair(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    """
    Repair the journal in another process, as its own command: oauthctl
    loads nothing of the journal.
    """
    report = run_helper(REPAIR, ["--", args.data], "the repair")
    description = str(report.pop("description", ""))
    emit(args, term, report, lambda: description)


def run_helper(module: str, arguments: list[str], what: str) -> dict[str, Any]:
    """
    Run C{python -m module arguments}, a helper that prints one line of
    JSON: its report, or C{{"error": ...}}.

    @raise CtlError: the helper failed, or reported an error.
    """
    try:
        done = subprocess.run(
            # -P: never import from the directory oauthctl runs in (root
            # could be anywhere).
            [sys.executable, "-P", "-m", module, *arguments], stdin=subprocess.DEVNULL,
            capture_output=True, encoding="utf-8", errors="replace",
        )
    except OSError as e:
        raise CtlError(f"cannot run {what}: {e.strerror or e}") from None
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "")
    except ValueError:
        report = None
    if not isinstance(report, dict) or (done.returncode != 0 and "error" not in report):
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise CtlError(f"{what} failed: {one_line(why[0])}")
    if "error" in report:
        raise CtlError(one_line(str(report["error"])))
    return report


def one_line(text: str) -> str:
    return " ".join(text.split())


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
    if args.no_post_logout_redirect_uris:
        changes["post_logout_redirect_uris"] = []
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


def cmd_clients_secret(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(wire.ModifyClient, id=args.id, regenerate_secret=True)
    if args.json:
        emit(args, term, row, str)
    elif not row["secret"]:
        term.print(f"Client {row['id']} is public: it has no secret.")
    else:
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
    row = connect().call(wire.SetPassword, name=args.name, password=password,
                         revoke_app_passwords=args.revoke_app_passwords or None)
    kept = "" if args.revoke_app_passwords else " (app passwords and what they gave are kept)"
    emit(args, term, row, lambda: (
        f"Changed the password of {row['name']}; revoked {row['revoked']} tokens{kept}."
    ))


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
    confirm(args, term, f"Delete user {args.name} and the clients they own, and revoke all their tokens?")
    row = connect().call(wire.RemoveUser, name=args.name)

    def human() -> str:
        clients = f" and the clients they owned ({', '.join(row['clients'])})" if row["clients"] else ""
        return f"Deleted user {row['name']}{clients}; revoked {row['revoked']} tokens."

    emit(args, term, row, human)


def cmd_auth_add(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    row = connect().call(
        wire.AddToken, label=args.name, scope=args.scope, lifetime=args.expires,
        user=args.user, client_id=args.client, uses=args.uses,
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
