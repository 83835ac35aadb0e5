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
