# -*- test-case-name: tests.test_ctl -*-
"""
C{oauthctl}: administer a running oauthd over its control socket.

The commands mirror PhotoPrism's C{photoprism clients} and C{photoprism auth}
(and add C{users}, C{status}, C{compact} and the offline C{repair}). Output is
aligned tables for people and, with C{--json}, JSON for programs. Exit status
0 on success, 1 on an error (one line on stderr), 2 on a usage error.

Here are the command line and L{main}; the commands are in
L{oauthd.ctl.commands}, the connection to the daemon in
L{oauthd.ctl.connection}, tables and JSON in L{oauthd.ctl.output}. oauthctl
loads nothing of the daemon but its wire schema, L{oauthd.control.wire}.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from oauthd import __version__
from oauthd.ctl.commands import (
    cmd_auth_add,
    cmd_auth_ls,
    cmd_auth_rm,
    cmd_auth_show,
    cmd_clients_add,
    cmd_clients_ls,
    cmd_clients_mod,
    cmd_clients_secret,
    cmd_clients_rm,
    cmd_clients_show,
    cmd_compact,
    cmd_repair,
    cmd_status,
    cmd_users_add,
    cmd_users_ls,
    cmd_users_mod,
    cmd_users_passwd,
    cmd_users_rm,
    cmd_users_show,
    UsageError,
)
from oauthd.ctl.backup import cmd_backup
from oauthd.ctl.audit import add_parser as add_audit_parser
from oauthd.ctl.connection import Connection, CtlError, connect, socket_path
from oauthd.ctl.consents import cmd_users_consents
from oauthd.ctl.keys import cmd_keys_ls, cmd_keys_rotate
from oauthd.ctl.reload import cmd_reload
from oauthd.ctl.migrate import cmd_migrate
from oauthd.ctl.second_factor import cmd_users_2fa_disable, cmd_users_2fa_enable, cmd_users_2fa_status
from oauthd.ctl.output import Terminal

__all__ = ["Terminal", "main"]

DEFAULT_TOKEN_LIFETIME = 365 * 86400
"""
C{auth add}'s default lifetime, as PhotoPrism's: one year.
"""


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")


def user_profile_options(sub: argparse.ArgumentParser) -> None:
    """
    The OpenID profile options of C{users add} and C{users mod}.
    """
    verified = sub.add_mutually_exclusive_group()
    verified.add_argument("--email-verified", action="store_true", default=None,
                          help="the email address is known to be the user's")
    verified.add_argument("--email-unverified", dest="email_verified", action="store_false")
    sub.add_argument("--address", help="the postal address, one line ('' for none)")


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
    command(commands, "reload", cmd_reload,
            "read the configuration again (as SIGHUP does) and show what changed")
    repair = command(
        commands, "repair", cmd_repair,
        "offline, with oauthd stopped: rewrite a damaged journal with every verifiable record",
    )
    repair.add_argument("--data", metavar="DIR", required=True, help="the data directory")
    migrate = command(
        commands, "migrate", cmd_migrate,
        "offline, with oauthd stopped: copy a journal into an empty shared event log, or back",
    )
    migrate.add_argument("--data", metavar="DIR", required=True, help="the data directory")
    way = migrate.add_mutually_exclusive_group(required=True)
    way.add_argument("--to", metavar="URI", help="the postgresql:// URI of an empty shared log to fill")
    way.add_argument("--from", dest="source", metavar="URI",
                     help="the postgresql:// URI of a shared log to copy into an empty data directory")
    migrate.add_argument("--secret-key-file", metavar="PATH",
                         help="the shared log's key file (as eventlog_secret_key_file)")
    backup = command(
        commands, "backup", cmd_backup,
        "while oauthd runs: copy its data (compacted journal, audit trail) into a new data directory",
    )
    backup.add_argument("dest", metavar="DEST", help="the directory to create (it must not exist)")

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
        sub.add_argument(
            "--post-logout-redirect-uri", dest="post_logout_redirect_uris", action="append", metavar="URI",
            help="where logging out may return the browser; repeat for several"
            + ("" if adding else " (replaces the list)"),
        )
        sub.add_argument("--user", metavar="NAME", help="the user who owns it" + ("" if adding else " ('' for none)"))
        sub.add_argument("--role", choices=["client", "admin"], help="its role" + (" [default: client]" if adding else ""))
        introspect = sub.add_mutually_exclusive_group()
        introspect.add_argument(
            "--introspect", action="store_true", default=None,
            help="a resource server: it may introspect tokens" + ("" if adding else " (--no-introspect: no more)"),
        )
        if not adding:
            introspect.add_argument("--no-introspect", dest="introspect", action="store_false")
        sub.add_argument(
            "--pkce", choices=["required", "optional"],
            help="PKCE at the authorization endpoint; optional only for a confidential client "
            "whose relying party sends none" + (" [default: required]" if adding else ""),
        )
        jwt = sub.add_mutually_exclusive_group()
        jwt.add_argument(
            "--jwt-access-tokens", action="store_true", default=None,
            help="issue signed JWT access tokens (RFC 9068) rather than opaque ones"
            + ("" if adding else " (--no-jwt-access-tokens: opaque again)"),
        )
        sub.add_argument(
            "--audience", action="append", metavar="URI",
            help="the aud of its JWT access tokens; repeat for several [default: the issuer]"
            + ("" if adding else " (replaces the list)"),
        )
        sub.add_argument(
            "--id-token-alg", dest="id_token_signed_response_alg", choices=["RS256", "ES256", "EdDSA"],
            help="how its ID tokens are signed [default: the server's id_token_alg]",
        )
        claims = sub.add_mutually_exclusive_group()
        claims.add_argument(
            "--id-token-claims", action="store_true", default=None,
            help="put the profile, email and address claims in ID tokens too, not only in userinfo"
            + ("" if adding else " (--no-id-token-claims: userinfo only)"),
        )
        if not adding:
            jwt.add_argument("--no-jwt-access-tokens", dest="jwt_access_tokens", action="store_false")
            claims.add_argument("--no-id-token-claims", dest="id_token_claims", action="store_false")

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
    sub.add_argument("--no-post-logout-redirect-uris", action="store_true",
                     help="remove every post-logout redirect URI")
    state = sub.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false", help="disable it and revoke its tokens")
    sub.add_argument("--regenerate-secret", action="store_true", help="issue a new secret (shown once)")
    sub = command(clients, "secret", cmd_clients_secret,
                  "issue a client a new secret, shown once (as mod --regenerate-secret)")
    sub.add_argument("id")
    sub = command(clients, "rm", cmd_clients_rm, "delete a client and revoke its tokens")
    sub.add_argument("id")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    users = group("users", "create and manage users", ["user"])
    sub = command(users, "add", cmd_users_add, "create a user (asks for the password)")
    sub.add_argument("name")
    sub.add_argument("--role", choices=["admin", "user"], help="[default: user]")
    sub.add_argument("--email")
    sub.add_argument("--name", "--full-name", dest="full_name", help="the full name")
    user_profile_options(sub)
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub = command(users, "ls", cmd_users_ls, "list users", ["list"])
    sub.add_argument("search", nargs="?", help="a prefix of the name, email or full name")
    sub.add_argument("-n", "--limit", type=int, default=0, help="show at most N [default: all]")
    sub = command(users, "show", cmd_users_show, "show one user")
    sub.add_argument("name")
    sub = command(
        users, "passwd", cmd_users_passwd,
        "set a user's password and revoke their sessions and grants (app passwords stay)",
    )
    sub.add_argument("name")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_argument(
        "--revoke-app-passwords", action="store_true",
        help="revoke their app passwords too, and all obtained with them",
    )
    sub = command(users, "mod", cmd_users_mod, "change a user")
    sub.add_argument("name")
    sub.add_argument("--role", choices=["admin", "user"])
    sub.add_argument("--email", help="'' for none")
    sub.add_argument("--name", "--full-name", dest="full_name", help="the full name, '' for none")
    user_profile_options(sub)
    state = sub.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false", help="disable and revoke their tokens")
    sub = command(users, "rm", cmd_users_rm, "delete a user and the clients they own, and revoke their tokens")
    sub.add_argument("name")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    two_factor = users.add_parser(
        "2fa", parents=[common], help="two-factor login (TOTP)",
        description="two-factor login (TOTP)",
    ).add_subparsers(dest="two_factor_action", metavar="ACTION", required=True)
    sub = command(
        two_factor, "enable", cmd_users_2fa_enable,
        "turn on TOTP for a user: print the otpauth:// URI, its QR code and ten recovery codes, once",
    )
    sub.add_argument("name")
    sub = command(
        two_factor, "disable", cmd_users_2fa_disable,
        "turn off TOTP for a user and revoke their sessions and grants (app passwords stay)",
    )
    sub.add_argument("name")
    sub = command(two_factor, "status", cmd_users_2fa_status, "show whether a user has TOTP on")
    sub.add_argument("name")
    sub = command(users, "consents", cmd_users_consents,
                  "list the clients a user consented to at the authorization endpoint")
    sub.add_argument("name")
    sub.add_argument("--revoke", metavar="CLIENT",
                     help="forget the consent to this client and revoke the tokens it holds for the user")

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
    sub.add_argument("--uses", type=int, metavar="N",
                     help="with --scope register: allow N (1 to 1000) registrations, then revoke it")
    sub = command(auth, "ls", cmd_auth_ls, "list tokens (by handle; never their values)", ["list"])
    sub.add_argument("search", nargs="?", help="a prefix of the handle, client, user or name; or a token")
    sub.add_argument("--expired", action="store_true", help="include expired tokens not yet swept")
    sub.add_argument("-n", "--limit", type=int, default=0, help="show at most N [default: all]")
    sub = command(auth, "show", cmd_auth_show, "show one token")
    sub.add_argument("token", metavar="HANDLE|TOKEN")
    sub = command(auth, "rm", cmd_auth_rm, "revoke a token at once")
    sub.add_argument("token", metavar="HANDLE|TOKEN")

    keys = group("keys", "list and rotate the keys that sign ID tokens and JWT access tokens", ["key"])
    command(keys, "ls", cmd_keys_ls, "list the published signing keys (never their private parts)", ["list"])
    sub = command(
        keys, "rotate", cmd_keys_rotate,
        "add a new key: published at once, signing after key_publish_delay; the old one retires",
    )
    sub.add_argument("--alg", choices=["RS256", "ES256", "EdDSA"], help="only this algorithm [default: all]")
    sub.add_argument("--now", action="store_true", help="sign with it at once (no publish delay)")
    add_audit_parser(command, commands)
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
