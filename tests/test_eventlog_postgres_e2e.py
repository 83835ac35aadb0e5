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
from pathlib import Path

from tests.daemon import REPO, Daemon, free_port
from tests.postgres import fresh_database
from tests.test_ctl_e2e import ctl


def test_daemon_keeps_its_state_in_postgresql(tmp_path: Path) -> None:
    """
    A token issued (and one revoked) on a daemon over PostgreSQL is still
    valid (and still revoked) on a daemon started after it on another data
    directory over the same database; the password in the URI is not in
    the log.
    """
    uri = fresh_database().replace("postgresql:///", "postgresql://postgres:sekrit@/")
    first = Daemon(tmp_path / "one", "--eventlog", uri)
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

    second = Daemon(tmp_path / "two", "--eventlog", uri)
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
         "--eventlog", uri],
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
