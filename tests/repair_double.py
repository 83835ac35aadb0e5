"""
A stand-in for C{python -m oauthd.eventlog.repair DIR} in oauthctl's tests:
what it answers depends on DIR's name.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    directory = argv[-1]
    what = os.path.basename(directory)
    if what == "sound":
        report = {
            "journal": os.path.join(directory, "journal.oauthd"), "kept_records": 3,
            "skipped_bytes": 0, "damaged_regions": 0, "header_damaged": False,
            "damaged_copy": None,
        }
        print(json.dumps({**report, "description": f"{directory}: no damage found"}))
        return 0
    if what == "refused":
        print(json.dumps({"error": f"{directory} is locked:\n is oauthd running?"}))
        return 1
    if what == "crash":
        raise RuntimeError("the repair broke")
    print("not json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
