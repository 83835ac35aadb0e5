"""
What reading and verifying the audit trail costs the daemon's reader thread.

    python bench/audit_read.py [EVENTS]   (default 300000)

Writes EVENTS token.issue events (each fourth for client c1, the rest for
c2..c4) to a trail in a temporary directory, rotated every 16 MiB, then
times, in this process: reading every event a page at a time as
C{oauthctl audit --json} asks for them; reading with a filter that matches
a quarter (--client c1) and one that matches nothing; and verifying the
whole chain. Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    sys.path.insert(0, REPO)
    from twisted.internet.task import Clock

    from oauthd.control.wire import PAGE_BYTES, PAGE_ROWS
    from oauthd.interfaces import AuditQuery
    from oauthd.services.audit import AuditTrail, TrailLimits
    from oauthd.services.audit_reader import read_page, start_of, verify
    from oauthd.testing import InlinePool, InlineReactor

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory() as directory:
        clock = Clock()
        clock.advance(1_800_000_000)
        trail = AuditTrail(directory, clock, InlineReactor(), pool=InlinePool(),
                           limits=TrailLimits(rotate_bytes=16 << 20), sync=lambda fd: None)
        trail.startService()
        for n in range(count):
            trail("token.issue", "ok", {"client": f"c{n % 4 + 1}", "ip": "127.0.0.1", "scope": "*",
                                        "token": f"sess{n:020d}", "grant": "client_credentials"})
            if n % 1000 == 999:
                clock.advance(1)
        clock.advance(1)
        trail.stopService()
        size = sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
        print(f"{count} events, {size / 2**20:.1f} MiB in {len(os.listdir(directory))} files")

        for label, query in [("all events", AuditQuery()), ("--client c1 (a quarter)", AuditQuery(client="c1")),
                             ("--user nobody (none)", AuditQuery(user="nobody"))]:
            started = time.perf_counter()
            position = (*start_of(directory), trail.written_seq)
            rows = pages = 0
            while True:
                page = read_page(directory, query, position, PAGE_ROWS, trail.written_seq, PAGE_BYTES)
                rows += len(page.rows)
                pages += 1
                position = page.position
                if page.at_end:
                    break
            took = time.perf_counter() - started
            print(f"read {label}: {rows} events in {pages} pages, {took:.2f} s"
                  f" ({count / took:,.0f} lines/s, {size / 2**20 / took:.0f} MiB/s,"
                  f" {took / pages * 1000:.1f} ms a page)")
        started = time.perf_counter()
        found = verify(directory, (1, "0" * 64), trail.written_seq)
        took = time.perf_counter() - started
        print(f"verify: {found['lines']} lines, broken at {found['file'] or 'none'}, {took:.2f} s"
              f" ({count / took:,.0f} lines/s)")


if __name__ == "__main__":
    main()
