"""
C{oauthctl migrate}: with oauthd stopped, copy a data directory's journal
into an empty shared event log in PostgreSQL (C{--to}), or a shared log
into an empty data directory (C{--from}).  The work runs in another
process (L{oauthd.state.migration}): oauthctl loads nothing of the log.
"""

from __future__ import annotations

import argparse

from oauthd.ctl.commands import Connect, run_helper
from oauthd.ctl.connection import CtlError
from oauthd.ctl.output import Terminal, emit

MIGRATE = "oauthd.state.migration"


def cmd_migrate(args: argparse.Namespace, term: Terminal, connect: Connect) -> None:
    if not (args.to or args.source).startswith(("postgresql://", "postgres://")):
        raise CtlError("expected a postgresql:// URI")
    # One word each, so a value that looks like an option stays a value.
    arguments = [f"--data={args.data}", f"--to={args.to}" if args.to else f"--from={args.source}"]
    if args.secret_key_file:
        arguments.append(f"--secret-key-file={args.secret_key_file}")
    report = run_helper(MIGRATE, arguments, "the migration")
    description = str(report.pop("description", ""))
    emit(args, term, report, lambda: description)
