"""
C{oauthctl backup DEST} against the real daemon: a backup taken while
tokens are being issued over HTTP holds every token acknowledged before it
began, a second daemon starts on the copy as it is, and bad destinations
get one line and exit status 1, with nothing left behind.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from tests.daemon import REPO, Daemon, seed


def oauthctl(sock: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), *argv],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120,
    )


class Tokens:
    """
    A client's tokens over HTTP: issued with client credentials, checked by
    introspection.
    """

    def __init__(self, data: Path) -> None:
        client, secret = seed(data, lambda server: server.add_client(
            "loader", scope="metrics", max_tokens=-1, introspect=True))
        self.basic = "Basic " + base64.b64encode(f"{client.id}:{secret}".encode()).decode()

    def _post(self, url: str, body: str) -> dict[str, object]:
        request = urllib.request.Request(url, data=body.encode(), headers={"Authorization": self.basic})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, object] = json.load(response)
            return answer

    def issue(self, daemon: Daemon) -> str:
        return str(self._post(daemon.url + "/api/v1/oauth/token", "grant_type=client_credentials")["access_token"])

    def active(self, daemon: Daemon, token: str) -> bool:
        return self._post(daemon.url + "/api/v1/oauth/introspect", f"token={token}")["active"] is True


def test_backup_under_load_holds_every_acknowledged_token(tmp_path: Path) -> None:
    """
    Four threads issue tokens over HTTP while C{oauthctl backup} runs; a
    second daemon started on the copy finds every token acknowledged before
    the backup began active. The copy is a private data directory (0700,
    files 0600) with the audit trail beside the journal, and the backup is
    in the original's audit trail.
    """
    data = tmp_path / "data"
    dest = tmp_path / "backups" / "oauthd-1"
    dest.parent.mkdir()
    tokens = Tokens(data)
    daemon = Daemon(data)
    acknowledged: list[tuple[float, str]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def load() -> None:
        try:
            while not stop.is_set():
                token = tokens.issue(daemon)
                acknowledged.append((time.monotonic(), token))
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and not failures:
            assert time.monotonic() < deadline, "the load did not start"
            time.sleep(0.01)
        began = time.monotonic()
        done = oauthctl(data / "control.sock", "backup", str(dest), "--json")
        ended = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        assert daemon.stop() == 0, daemon.output()
    assert not failures, failures
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    during = [token for when, token in acknowledged if began < when < ended]
    assert during, "no token was issued while the backup ran"
    before = [token for when, token in acknowledged if when < began]
    report = json.loads(done.stdout)
    assert report["path"] == str(dest)
    names = {f["name"] for f in report["files"]}
    assert {"journal.oauthd", "audit.log"} <= names
    assert sorted(os.listdir(dest)) == sorted(names)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for f in report["files"]:
        status = (dest / f["name"]).stat()
        assert stat.S_IMODE(status.st_mode) == 0o600 and status.st_size == f["bytes"]
    assert os.listdir(dest.parent) == ["oauthd-1"]
    assert b'"event":"data.backup"' in (data / "audit.log").read_bytes()

    second = Daemon(dest)
    try:
        inactive = [token for token in before if not tokens.active(second, token)]
    finally:
        assert second.stop() == 0, second.output()
    assert inactive == [], f"{len(inactive)} of {len(before)} acknowledged tokens are missing"


def run(*argv: str) -> tuple[int, str, str]:
    term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(),
                    environ={"OAUTHD_SOCKET": "/nonexistent/control.sock"})
    code = main(list(argv), term)
    return code, term.stdout.getvalue(), term.stderr.getvalue()  # type: ignore[attr-defined]


def test_backup_refuses_an_existing_destination(tmp_path: Path) -> None:
    dest = tmp_path / "old"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    assert run("backup", str(dest)) == (1, "", (
        f"oauthctl: {dest} exists; a backup goes to a new directory and overwrites nothing:"
        " remove it or name another\n"))
    assert os.listdir(dest) == ["keep"] and os.listdir(tmp_path) == ["old"]


def test_backup_into_a_missing_parent(tmp_path: Path) -> None:
    dest = tmp_path / "missing" / "copy"
    assert run("backup", str(dest)) == (
        1, "", f"oauthctl: cannot create {dest}: {tmp_path / 'missing'} does not exist\n")
    assert os.listdir(tmp_path) == []


def test_backup_without_a_daemon_leaves_nothing(tmp_path: Path) -> None:
    """
    The real entry point: no traceback, exit status 1, and the directory
    it began to write removed.
    """
    done = oauthctl(Path("/nonexistent/control.sock"), "backup", str(tmp_path / "copy"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("oauthctl: cannot connect to /nonexistent/control.sock: no such file")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run as another uid")
def test_backup_into_a_directory_it_cannot_write(tmp_path: Path) -> None:
    from tests.test_ctl_e2e import run_as

    parent = Path(tempfile.mkdtemp(prefix="oauthd-backup-", dir="/tmp"))
    try:
        parent.chmod(0o755)
        dest = parent / "copy"
        code, output = run_as(65534, ["--socket", "/nonexistent/control.sock", "backup", str(dest)])
        assert (code, output) == (
            1, f"oauthctl: cannot create {dest}: {parent} is not writable (Permission denied)\n")
        assert os.listdir(parent) == []
        hidden = tmp_path / "hidden" / "copy"  # tmp_path is root's, 0700
        code, output = run_as(65534, ["--socket", "/nonexistent/control.sock", "backup", str(hidden)])
        assert (code, output) == (
            1, f"oauthctl: cannot create {hidden}: cannot reach {hidden.parent} (Permission denied)\n")
    finally:
        shutil.rmtree(parent)


class Answers:
    """
    A daemon's answers, as a connection gives them: one per command name.
    """

    def __init__(self, **answers: dict[str, Any]) -> None:
        self.answers = answers

    def call(self, command: type, **arguments: Any) -> dict[str, Any]:
        return self.answers[command.__name__]


@pytest.mark.parametrize("files", [
    '[["../escaped", 1]]', '[["/etc/passwd", 1]]', '[["a", -1]]', '[["a", 1], ["a", 1]]', '[]',
    '[["..", 1]]', '{"a": 1}', 'not json',
])
def test_backup_refuses_a_file_list_it_cannot_use(tmp_path: Path, files: str) -> None:
    """
    Names that would leave the new directory, sizes that are not sizes and
    lists that are not lists are refused before anything is written; the
    directory begun is removed.
    """
    from oauthd.ctl.backup import cmd_backup
    from oauthd.ctl.connection import CtlError

    answers = Answers(StartBackup={"backup": 1, "files": files})
    args = argparse.Namespace(dest=str(tmp_path / "copy"), json=False)
    term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    with pytest.raises(CtlError, match="^the daemon sent a list of files oauthctl cannot use$"):
        cmd_backup(args, term, lambda: answers)  # type: ignore[arg-type,return-value]
    assert os.listdir(tmp_path) == []
    assert not (tmp_path.parent / "escaped").exists()
