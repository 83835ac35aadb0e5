"""
How long C{oauthctl auth ls} takes over a real daemon holding many tokens.

    python bench/control_listing.py [TOKENS]     (default 100000)

Writes a journal with TOKENS access tokens into a temporary data directory
(offline, through the same store the daemon uses), starts C{twistd -n
oauthd} on it, and times C{oauthctl auth ls --json} and C{oauthctl auth ls}
as separate processes, as an admin would run them. Prints figures; asserts
nothing but the row count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def write_journal(data: Path, count: int) -> None:
    from oauthd.protocol.issuing import mint
    from oauthd.state.decision import Decision
    from oauthd.state.entities import ACCESS
    from oauthd.testing import seed

    async def build(server: Any) -> None:
        for start in range(0, count, 10_000):
            records = [
                mint(server.ctx, ACCESS, scope="metrics", lifetime=86400, label=f"bench {start}").record
                for _ in range(min(10_000, count - start))
            ]
            await server.store.commit(Decision(None, records))

    seed(str(data), time.time(), build)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        write_journal(data, count)
        print(f"wrote {count} tokens in {time.perf_counter() - started:.1f} s")
        env = dict(os.environ, PYTHONPATH=REPO)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        daemon = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "oauthd", "--data", str(data), "--listen", "tcp:0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )
        sock = data / "control.sock"
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.05)
            ctl = [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock)]
            for argv in (["status"], ["auth", "ls", "--json"], ["auth", "ls"]):
                started = time.perf_counter()
                out = subprocess.run(
                    ctl + argv, env=env, check=True, capture_output=True, text=True, cwd=tmp,
                ).stdout
                elapsed = time.perf_counter() - started
                if argv == ["auth", "ls", "--json"]:
                    assert len(json.loads(out)) == count
                print(f"oauthctl {' '.join(argv)}: {elapsed:.2f} s ({len(out) >> 10} KiB of output)")
        finally:
            daemon.terminate()
            daemon.wait()


if __name__ == "__main__":
    main()
