"""
oauthctl's helper, not a command for people (they run C{oauthctl repair
--data DIR}).

C{python -m oauthd.eventlog.repair DIR} runs L{repair} on the data directory
C{DIR} and prints exactly one line of JSON on stdout:

    - on success, exit status 0: the L{RepairReport}'s fields and
      C{"description"}, its L{RepairReport.describe} line;
    - on a L{JournalError} or an C{OSError}, exit status 1:
      C{{"error": "<the error as one line>"}}.

oauthctl runs this in a subprocess because it does not import the event log
itself; the JSON line is the whole interface between the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from attrs import asdict

from oauthd.eventlog.errors import JournalError
from oauthd.eventlog.repair import repair


def main(argv: Sequence[str]) -> int:
    """
    Repair the directory named in C{argv} and print the JSON line.

    @return: the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m oauthd.eventlog.repair",
        description="oauthctl's helper (use oauthctl repair): repair the"
        " journal in DIR and print the outcome as one line of JSON",
    )
    parser.add_argument("directory", metavar="DIR", help="the oauthd data directory")
    options = parser.parse_args(argv)
    try:
        report = repair(options.directory, now=time.time())
    except (JournalError, OSError) as e:
        print(json.dumps({"error": " ".join(str(e).split())}))
        return 1
    print(json.dumps({**asdict(report), "description": report.describe()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
