"""
End-to-end: the real twistd process, over real sockets.
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon import Daemon, port_is_open


def test_daemon_serves_discovery_and_stops_on_sigterm(tmp_path: Path) -> None:
    """
    twistd -n oauthd starts with a temporary data directory, serves both
    discovery documents over HTTP, and on SIGTERM exits 0 within 5 s leaving
    nothing listening.
    """
    data = tmp_path / "data"
    daemon = Daemon(data)
    try:
        status, oauth = daemon.get_json("/.well-known/oauth-authorization-server")
        assert status == 200
        assert oauth["issuer"] == daemon.url
        status, oidc = daemon.get_json("/.well-known/openid-configuration")
        assert status == 200
        assert oidc["issuer"] == daemon.url
        assert (data / "control.sock").stat().st_mode & 0o777 == 0o600
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    assert not port_is_open(daemon.port)
    assert not (data / "control.sock").exists()


def test_acknowledged_tokens_survive_sigkill_and_the_daemon_restarts(tmp_path: Path) -> None:
    """
    Tokens issued over HTTP (each answer sent only once durable) are all
    there after the daemon is killed with SIGKILL; the restart is not blocked
    by the socket or lock the dead process left behind.
    """
    import base64
    import json
    import signal
    import urllib.request

    from tests.daemon import seed

    data = tmp_path / "data"
    client, secret = seed(data, lambda server: server.add_client(
        "killer", scope="metrics", max_tokens=-1, introspect=True))
    basic = base64.b64encode(f"{client.id}:{secret}".encode()).decode()

    def issue(url: str) -> str:
        request = urllib.request.Request(
            url + "/api/v1/oauth/token", data=b"grant_type=client_credentials",
            headers={"Authorization": "Basic " + basic})
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["access_token"])

    def introspect(url: str, token: str) -> bool:
        request = urllib.request.Request(
            url + "/api/v1/oauth/introspect", data=f"token={token}".encode(),
            headers={"Authorization": "Basic " + basic})
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(json.load(response)["active"])

    first = Daemon(data)
    issued = [issue(first.url) for _ in range(20)]
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    first.log.close()
    assert (data / "control.sock").exists()
    second = Daemon(data)
    try:
        assert all(introspect(second.url, token) for token in issued)
    finally:
        assert second.stop() == 0


def test_sigterm_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    """
    A SIGTERM that lands while the daemon is still starting (its port open,
    its reactor not yet running) still ends it with status 0.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.daemon import REPO, free_port

    port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    process = subprocess.Popen(
        [twistd, "--nodaemon", "--pidfile=", "oauthd", "--listen", f"tcp:{port}:interface=127.0.0.1",
         "--data", str(tmp_path / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    deadline = time.monotonic() + 30
    while not port_is_open(port) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
