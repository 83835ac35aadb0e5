"""
Crash test of the audit trail: the real C{twistd oauthd} issues tokens under
a stream of requests and is SIGKILLed at a random moment, a few times over
the same data directory. After each kill the chain of the trail verifies
(a torn last line aside) and every token whose response was received has
its C{token.issue} event in the trail. The trail rotates at its smallest
size, so some kills land around a rotation.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import signal
import threading
import time
from pathlib import Path

from oauthd.protocol.tokens import handle, key_and_session_id
from oauthd.services.audit import verify_trail
from tests.daemon import Daemon, seed

KILLS = 3
STREAMS = 6


def _issue_until(port: int, basic: str, stop: threading.Event, received: list[str]) -> None:
    """
    Ask for tokens over one keep-alive connection until C{stop} is set or
    the daemon dies; keep the secret of every answer received.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": "Basic " + basic,
               "Content-Type": "application/x-www-form-urlencoded"}
    try:
        while not stop.is_set():
            connection.request("POST", "/api/v1/oauth/token", b"grant_type=client_credentials", headers)
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                received.append(json.loads(body)["access_token"])
    except (OSError, http.client.HTTPException):
        pass  # killed
    finally:
        connection.close()


def _issued_handles(data: Path) -> set[str]:
    handles = set()
    for path in sorted(data.glob("audit.log*")):
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    event = json.loads(line)
                    if event["event"] == "token.issue":
                        handles.add(event["token"])
    return handles


def test_every_acknowledged_token_is_in_a_verifiable_trail_after_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client, secret = seed(data, lambda server: server.add_client(
        "crash", scope="metrics", max_tokens=-1))
    basic = base64.b64encode(f"{client.id}:{secret}".encode()).decode()
    config = tmp_path / "oauthd.toml"
    config.write_text("audit_rotate_bytes = 65536\n")
    chance = random.Random()
    received: list[str] = []
    for _ in range(KILLS):
        daemon = Daemon(data, "--config", str(config))
        stop = threading.Event()
        streams = [threading.Thread(target=_issue_until, args=(daemon.port, basic, stop, received))
                   for _ in range(STREAMS)]
        for stream in streams:
            stream.start()
        time.sleep(chance.uniform(0.2, 0.8))
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        stop.set()
        for stream in streams:
            stream.join()
        daemon.log.close()
        report = verify_trail(str(data))
        assert report.broken is None, report
        issued = _issued_handles(data)
        missing = [s for s in received if handle(key_and_session_id(s)[0]) not in issued]
        assert not missing, f"{len(missing)} of {len(received)} acknowledged tokens have no audit event"
    assert received
    assert list(data.glob("audit.log.*")), "the trail never rotated"
