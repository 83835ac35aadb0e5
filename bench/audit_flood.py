"""
What a flood of unauthenticated requests costs the audit trail on disk.

    python bench/audit_flood.py [REQUESTS] [--tree DIR]   (default 12000)

Starts C{twistd -n oauthd} (this checkout's, or the one in DIR) on a
temporary data directory, sends REQUESTS C{GET /api/v1/oauth/userinfo} with
C{Authorization: Bearer junk} over 8 keep-alive connections, stops it with
SIGTERM (which writes what is pending) and prints the bytes the audit files
hold, per request. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flood(port: int, count: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(count):
        connection.request("GET", "/api/v1/oauth/userinfo", headers={"Authorization": "Bearer junk"})
        connection.getresponse().read()
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("requests", nargs="?", type=int, default=12_000)
    parser.add_argument("--tree", default=REPO, help="the checkout whose daemon to run")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from tests import daemon as daemon_module

    daemon_module.REPO = Path(args.tree)
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        daemon = daemon_module.Daemon(data)
        streams = [threading.Thread(target=flood, args=(daemon.port, args.requests // 8)) for _ in range(8)]
        started = time.monotonic()
        for stream in streams:
            stream.start()
        for stream in streams:
            stream.join()
        elapsed = time.monotonic() - started
        daemon.stop()
        sent = args.requests // 8 * 8
        size = sum(p.stat().st_size for p in data.glob("audit.log*"))
        lines = sum(len(p.read_bytes().splitlines()) for p in data.glob("audit.log*"))
        print(f"{args.tree}: {sent} junk bearer requests in {elapsed:.1f} s;"
              f" audit files {size} bytes, {lines} lines, {size / sent:.1f} bytes per request")


if __name__ == "__main__":
    main()
