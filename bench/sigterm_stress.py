"""
SIGTERM under load on the real daemon: C{twistd -n oauthd} issuing tokens to
several keep-alive connections at once is sent SIGTERM; it must exit 0 in
time, and, started again, know every token it answered, its audit trail
verifying.

    python bench/sigterm_stress.py [ROUNDS] [CONNECTIONS]

Prints one line per round; exits 1 if any round failed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import REPO, Daemon, seed  # noqa: E402


def oauthctl(sock: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), *argv],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120,
    )


def hammer(port: int, basic: str, issued: list[str], stop: threading.Event) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while not stop.is_set():
            connection.request("POST", "/api/v1/oauth/token", body=b"grant_type=client_credentials", headers={
                "Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                issued.append(json.loads(body)["access_token"])
            elif response.status != 503:
                print(f"  unexpected {response.status}: {body[:200]!r}", flush=True)
    except (OSError, http.client.HTTPException):
        pass  # the daemon went away
    finally:
        connection.close()


def one_round(n: int, connections: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="oauthd-sigterm-") as top:
        data = Path(top) / "data"
        client, secret = seed(data, lambda server: server.add_client(
            "loader", scope="metrics", max_tokens=-1, introspect=True))
        basic = base64.b64encode(f"{client.id}:{secret}".encode()).decode()
        daemon = Daemon(data)
        issued: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=hammer, args=(daemon.port, basic, issued, stop))
                   for _ in range(connections)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.3, 1.5))
        started = time.monotonic()
        code = daemon.stop(timeout=30)
        took = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join(30)
        ok = code == 0
        problems = [] if ok else [f"exit {code}:\n{daemon.output()[-3000:]}"]
        if "Traceback" in daemon.output() or "Unhandled" in daemon.output():
            problems.append(f"traceback in the log:\n{daemon.output()[-3000:]}")
        second = Daemon(data)
        try:
            sock = data / "control.sock"
            verified = oauthctl(sock, "audit", "verify")
            if verified.returncode != 0:
                problems.append(f"audit verify: {verified.stdout} {verified.stderr}")
            missing = 0
            conn = http.client.HTTPConnection("127.0.0.1", second.port, timeout=30)
            for token in issued:
                conn.request("POST", "/api/v1/oauth/introspect", body=f"token={token}".encode(), headers={
                    "Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                if not json.loads(response.read())["active"]:
                    missing += 1
            conn.close()
            if missing:
                problems.append(f"{missing} of {len(issued)} answered tokens unknown after the restart")
            trail = (data / "audit.log").read_text()
            issues = trail.count('"token.issue"') + trail.count('"token.create"')
        finally:
            if second.stop() != 0:
                problems.append("second daemon did not stop cleanly")
        print(f"round {n}: {len(issued)} tokens answered, stop took {took:.2f} s, exit {code},"
              f" {issues} issue lines in the trail" + "".join("\n  " + p for p in problems), flush=True)
        return not problems


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    failed = sum(not one_round(n, connections) for n in range(rounds))
    print(f"{rounds} rounds: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
