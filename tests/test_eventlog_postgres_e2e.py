"""
The real C{twistd oauthd} on a PostgreSQL event log (C{--eventlog}): what
it writes lives in the database, so a daemon started later on a new data
directory has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon import REPO, Daemon, free_port
from tests.postgres import fresh_database, shared_log_config, shared_log_options
from tests.test_ctl_e2e import ctl


def test_daemon_keeps_its_state_in_postgresql(tmp_path: Path) -> None:
    """
    A token issued (and one revoked) on a daemon over PostgreSQL is still
    valid (and still revoked) on a daemon started after it on another data
    directory over the same database; the password in the URI is not in
    the log.
    """
    uri = fresh_database().replace("postgresql:///", "postgresql://postgres:sekrit@/")
    first = Daemon(tmp_path / "one", *shared_log_options(tmp_path, uri))
    try:
        sock = first.data / "control.sock"
        kept = json.loads(ctl(sock, "--json", "auth", "add", "--name", "ci", "--scope", "metrics").stdout)
        gone = json.loads(ctl(sock, "--json", "auth", "add", "--name", "old", "--scope", "metrics").stdout)
        assert ctl(sock, "auth", "rm", gone["handle"]).returncode == 0
        assert not (first.data / "journal.oauthd").exists()
    finally:
        assert first.stop() == 0, first.output()
    assert "sekrit" not in first.output()
    assert "postgres:***@" in first.output()

    second = Daemon(tmp_path / "two", *shared_log_options(tmp_path, uri))
    try:
        sock = second.data / "control.sock"
        shown = json.loads(ctl(sock, "--json", "auth", "show", kept["secret"]).stdout)
        assert shown["label"] == "ci"
        assert ctl(sock, "auth", "show", gone["secret"]).returncode == 1
    finally:
        assert second.stop() == 0, second.output()


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    """
    A daemon whose event log's database cannot be reached exits with status
    1 and one line naming it, its password left out.
    """
    uri = f"postgresql://postgres:sekrit@/nowhere?host={tmp_path}/no-such-dir"
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "twistd"), "--nodaemon", "--pidfile=",
         "oauthd", "--listen", f"tcp:{free_port()}:interface=127.0.0.1", "--data", str(tmp_path / "data"),
         *shared_log_options(tmp_path, uri)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("oauthd: cannot reach the event log at postgresql://postgres:***@/nowhere")
    assert "sekrit" not in result.stdout + result.stderr


def test_eventlog_setting() -> None:
    """
    C{eventlog} (and C{--eventlog}) takes a postgresql:// URI, or "" for
    the journal; anything else is refused without echoing it; the URI is
    not in the config's repr.
    """
    import pytest

    from oauthd.config import ConfigError, build_config
    from oauthd.tap import Options

    assert build_config({}).eventlog == ""
    options = Options()
    options.parseOptions(["--eventlog", "postgresql://u:pw@db/oauthd"])
    config = options.config({})
    assert config.eventlog == "postgresql://u:pw@db/oauthd"
    assert "pw" not in repr(config)
    with pytest.raises(ConfigError) as caught:
        build_config({"eventlog": "mysql://u:pw@db/oauthd"})
    assert "pw" not in str(caught.value) and str(caught.value).startswith("eventlog: expected")


def _twistd(tmp_path: Path, data: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "twistd"), "--nodaemon", "--pidfile=",
         "oauthd", "--listen", f"tcp:{free_port()}:interface=127.0.0.1", "--data", data, *args],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path,
        timeout=60,
    )


def test_node_ids_keys_and_one_line_refusals(tmp_path: Path) -> None:
    """
    A node keeps the id it made in DATA/node-id and shows it in status; a
    second live node with that id, or a node with another key, exits with
    one line.
    """
    uri = fresh_database()
    config = shared_log_config(tmp_path, uri)
    first = Daemon(tmp_path / "one", "--config", config)
    try:
        node = (first.data / "node-id").read_text().strip()
        # The first keys are committed just after start: look again if the
        # state moved between the two views.
        for _ in range(20):
            status = json.loads(ctl(first.data / "control.sock", "--json", "status").stdout)
            shown = ctl(first.data / "control.sock", "status").stdout
            if status["state_digest"] in shown:
                break
            time.sleep(0.1)
        assert status["node"] == node
        assert len(status["state_digest"]) == 64
        assert f"Node            {node}" in shown or f"Node" in shown and node in shown
        assert status["state_digest"] in shown
        same = shared_log_config(tmp_path, uri, node_id=node)
        refused = _twistd(tmp_path, str(tmp_path / "two"), "--config", same)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        [line] = refused.stderr.splitlines()
        assert line.startswith(f"oauthd: node id '{node}' is in use by a live node")
        other_key = tmp_path / "other.key"
        other_key.write_text("00" * 32)
        other_key.chmod(0o600)
        wrong = shared_log_config(tmp_path, uri, eventlog_secret_key_file=str(other_key))
        refused = _twistd(tmp_path, str(tmp_path / "three"), "--config", wrong)
        assert refused.returncode == 1
        [line] = refused.stderr.splitlines()
        assert "is not the key the event log was written with" in line
        second = Daemon(tmp_path / "four", "--config", config)
        try:
            other = json.loads(ctl(second.data / "control.sock", "--json", "status").stdout)["node"]
            assert other == (second.data / "node-id").read_text().strip() != node
        finally:
            assert second.stop() == 0, second.output()
    finally:
        assert first.stop() == 0, first.output()
    again = Daemon(tmp_path / "one", "--config", config)
    try:
        assert json.loads(ctl(again.data / "control.sock", "--json", "status").stdout)["node"] == node
    finally:
        assert again.stop() == 0, again.output()


def test_postgresql_restarted_mid_run(tmp_path: Path) -> None:
    """
    While PostgreSQL is down, bearer checks still answer from memory,
    changes answer 503 with Retry-After and /healthz says the log is out of
    reach; once it is back, changes are made again.
    """

    from tests.postgres import cluster

    uri = fresh_database()
    daemon = Daemon(tmp_path / "one", "--config", shared_log_config(tmp_path, uri))
    sock = daemon.data / "control.sock"
    try:
        token = json.loads(ctl(sock, "--json", "auth", "add", "--name", "ci", "--scope", "metrics").stdout)
        cluster().stop_server()
        try:
            shown = ctl(sock, "--json", "auth", "show", token["secret"])
            assert shown.returncode == 0 and json.loads(shown.stdout)["label"] == "ci"
            refused = ctl(sock, "auth", "add", "--name", "down", "--scope", "metrics")
            assert refused.returncode == 1 and "the event log at postgresql:///" in refused.stderr, refused
            code, body = daemon.get_json("/healthz")
            assert body["eventlog"]["reachable"] is False, (code, body)
        finally:
            cluster().start_server()
        deadline = time.monotonic() + 15
        while ctl(sock, "auth", "add", "--name", "back", "--scope", "metrics").returncode != 0:
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        assert daemon.get_json("/healthz")[1]["eventlog"]["reachable"] is True
    finally:
        assert daemon.stop() == 0, daemon.output()


def test_shared_log_without_a_key_file_is_one_line(tmp_path: Path) -> None:
    """
    A daemon over a shared log without C{eventlog_secret_key_file} exits
    with status 1 and one line naming the setting: the log would otherwise
    hold signing keys and TOTP secrets in the clear.
    """
    refused = _twistd(tmp_path, str(tmp_path / "one"), "--eventlog", fresh_database())
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("oauthd: eventlog_secret_key_file is not set"), line
