"""
Reloading the real daemon's configuration (C{twistd -n oauthd}, as
systemd runs it): SIGHUP and C{oauthctl reload} with a good and with a bad
configuration, systemd's notifications around a reload, and the log file
reopened for logrotate.
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.test_ctl_e2e import ctl, oauthctl

LIMITED = "limit_token_ip = [2, 600]\n"


def wait_for(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def wrong_tokens(daemon: Daemon, count: int = 3) -> list[int]:
    """
    The statuses of C{count} requests with a token that does not exist.
    """
    codes = []
    for _ in range(count):
        request = urllib.request.Request(
            daemon.url + "/api/v1/oauth/userinfo", headers={"Authorization": "Bearer sess" + "x" * 40})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                codes.append(response.status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
    return codes


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "oauthd.toml"
    path.write_text("session_ttl = 86400\n")
    return path


@pytest.fixture
def daemon(tmp_path: Path, config: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path / "data", "--config", str(config))
    yield running
    assert running.stop() == 0, running.output()


def hangup(daemon: Daemon, wait_for_line: str) -> None:
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: wait_for_line in daemon.output(), daemon.output)


def test_sighup_reloads_a_changed_limit(daemon: Daemon, config: Path) -> None:
    config.write_text(LIMITED + "hash_threads = 3\n")
    hangup(daemon, "limit_token_ip changed from [60, 10] to [2, 600]")
    assert "hash_threads changed but needs a restart; running with 2" in daemon.output()
    assert wrong_tokens(daemon) == [401, 401, 429]
    assert daemon.process.poll() is None


def test_sighup_with_a_bad_config_keeps_the_running_one(daemon: Daemon, config: Path) -> None:
    config.write_text(LIMITED + "session_ttl = 5\n")
    hangup(daemon, "configuration not reloaded, the running one is kept")
    assert "session_ttl: 5 is not between 60 and 2678400" in daemon.output()
    assert daemon.get_json("/healthz")[0] == 200
    assert wrong_tokens(daemon) == [401, 401, 401]


def test_oauthctl_reload(daemon: Daemon, config: Path) -> None:
    sock = daemon.data / "control.sock"
    unchanged = oauthctl(sock, "reload")
    assert (unchanged.returncode, unchanged.stdout) == (0, "Reloaded the configuration: nothing changed.\n")
    config.write_text(LIMITED + "hash_threads = 3\n")
    done = oauthctl(sock, "reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "Reloaded the configuration:\n"
        "limit_token_ip: [60, 10] -> [2, 600]\n"
        "Changed, but needs a restart: hash_threads\n"
    )
    assert json.loads(ctl(sock, "reload", "--json").stdout) == {
        "changed": [], "restart": ["hash_threads"]}
    assert wrong_tokens(daemon) == [401, 401, 429]
    trail = daemon.data / "audit.log"
    wait_for(lambda: '"changed":"limit_token_ip"' in trail.read_text(), trail.read_text)
    assert '"event":"config.reload"' in trail.read_text()


def test_oauthctl_reload_with_a_bad_config(daemon: Daemon, config: Path) -> None:
    config.write_text(LIMITED + "session_ttl = [\n")
    done = oauthctl(daemon.data / "control.sock", "reload")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"oauthctl: configuration not reloaded, the running one is kept: {config}: invalid TOML")
    assert wrong_tokens(daemon) == [401, 401, 401]
    assert daemon.process.poll() is None


def test_systemd_hears_reloading_then_ready(tmp_path: Path, config: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.settimeout(15)
        daemon = Daemon(tmp_path / "data", "--config", str(config), environ={"NOTIFY_SOCKET": address})
        try:
            assert manager.recv(100) == b"READY=1"
            config.write_text(LIMITED)
            daemon.process.send_signal(signal.SIGHUP)
            reloading = manager.recv(100).decode()
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert 0 < int(reloading.rsplit("=", 1)[1]) <= before
            assert manager.recv(100) == b"READY=1"
            assert "limit_token_ip changed" in daemon.output()
        finally:
            assert daemon.stop() == 0
        assert manager.recv(100) == b"STOPPING=1"


def test_sighup_reopens_the_log_file(tmp_path: Path, config: Path) -> None:
    """
    logrotate moves the log aside and sends SIGHUP: the daemon writes to a
    new file at the same path.
    """
    log = tmp_path / "oauthd.log"
    daemon = Daemon(tmp_path / "data", "--config", str(config), twistd_args=[f"--logfile={log}"])
    try:
        log.rename(tmp_path / "oauthd.log.1")
        config.write_text(LIMITED)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.exists() and "limit_token_ip changed" in log.read_text(),
                 lambda: (tmp_path / "oauthd.log.1").read_text())
        moved = (tmp_path / "oauthd.log.1").read_text()
        assert "received SIGHUP" in moved and "limit_token_ip changed" not in moved
    finally:
        assert daemon.stop() == 0
