"""
oauthctl against the real daemon: C{twistd -n oauthd} and C{python -m
oauthd.ctl.cli} as separate processes, as an admin runs them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import oauthd.control.server  # noqa: F401  (imported before any fork below)
from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from tests.daemon import REPO, Daemon


def oauthctl(sock: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), *argv],
        env=dict(os.environ, PYTHONPATH=str(REPO)), input=stdin, capture_output=True, text=True,
        timeout=60,
    )


def ctl(sock: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """
    oauthctl's main in this process (it blocks, which is fine: the daemon is
    another process), for speed; L{oauthctl} proves the real entry point.
    """
    term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    code = main(["--socket", str(sock), *argv], term)
    return subprocess.CompletedProcess(
        argv, code, term.stdout.getvalue(), term.stderr.getvalue(),  # type: ignore[attr-defined]
    )


def userinfo(daemon: Daemon, token: str) -> tuple[int, Any]:
    """
    C{GET /api/v1/oauth/userinfo} with C{token} as the bearer credential.
    """
    request = urllib.request.Request(
        daemon.url + "/api/v1/oauth/userinfo", headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def introspect_self(daemon: Daemon, token: str) -> tuple[int, Any]:
    """
    C{POST /api/v1/oauth/introspect} of C{token}, authorised by C{token}
    itself as a bearer (it needs the introspect scope).
    """
    request = urllib.request.Request(
        daemon.url + "/api/v1/oauth/introspect", data=f"token={token}".encode(),
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_oauthctl_with_the_real_daemon(tmp_path: Path) -> None:
    """
    Under umask 0 the daemon's socket is 0600 in a 0700 directory; a token
    issued with auth add works as a bearer token over HTTP, and gets 401 as
    soon as auth rm returns; and everything is still there after a restart
    (it was in the journal).
    """
    data = tmp_path / "data"
    sock = data / "control.sock"
    old = os.umask(0)
    try:
        daemon = Daemon(data)
    finally:
        os.umask(old)
    try:
        assert sock.stat().st_mode & 0o777 == 0o600
        assert data.stat().st_mode & 0o777 == 0o700
        added = oauthctl(sock, "users", "add", "alice", "--password-stdin", stdin="correct horse\n")
        assert added.returncode == 0, added.stderr
        issued = ctl(sock, "--json", "auth", "add", "--user", "alice", "--name", "phone", "--scope", "*")
        assert issued.returncode == 0, issued.stderr
        app = json.loads(issued.stdout)
        kept = json.loads(ctl(
            sock, "--json", "auth", "add", "--name", "ci", "--scope", "metrics", "--expires", "0",
        ).stdout)
        shown = json.loads(ctl(sock, "--json", "auth", "show", app["secret"]).stdout)
        assert shown["handle"] == app["handle"] and shown["user"] == "alice"
        uid = json.loads(added.stdout)["uid"] if added.stdout.startswith("{") else json.loads(
            ctl(sock, "--json", "users", "show", "alice").stdout)["uid"]
        status, claims = userinfo(daemon, app["secret"])
        assert (status, claims["sub"], claims["preferred_username"]) == (200, uid, "alice")
        revoked = ctl(sock, "auth", "rm", app["handle"])
        assert revoked.stdout == f"Revoked {app['handle']}.\n"
        status, body = userinfo(daemon, app["secret"])
        assert (status, body["error"]) == (401, "invalid_token")

        access = json.loads(ctl(sock, "--json", "auth", "add", "--name", "rs", "--scope", "introspect").stdout)
        status, body = introspect_self(daemon, access["secret"])
        assert (status, body["active"], body["scope"]) == (200, True, "introspect")
        assert ctl(sock, "auth", "rm", access["secret"]).returncode == 0
        status, body = introspect_self(daemon, access["secret"])
        assert (status, body["error"]) == (401, "invalid_token")
        gone = ctl(sock, "auth", "show", app["secret"])
        assert gone.returncode == 1 and gone.stderr.startswith("oauthctl: no such token")
        assert gone.stderr.count("\n") == 1
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert not sock.exists()

    daemon = Daemon(data)
    try:
        status = json.loads(oauthctl(sock, "status", "--json").stdout)
        assert (status["users"], status["tokens"]) == (1, 1)
        assert json.loads(ctl(sock, "--json", "auth", "show", kept["secret"]).stdout)["label"] == "ci"
        assert ctl(sock, "auth", "show", app["secret"]).returncode == 1
    finally:
        daemon.stop()


def run_as(uid: int, argv: list[str]) -> tuple[int, str]:
    """
    Run oauthctl's main in a forked child that has become C{uid} (the
    interpreter lives under a private home, so a fresh process could not
    start as another user).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 99
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
            status = main(argv, term)
            os.write(write, (term.stdout.getvalue() + term.stderr.getvalue()).encode())  # type: ignore[attr-defined]
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another uid")
@pytest.mark.parametrize("admitted", [False, True])
def test_real_daemon_checks_the_peer_uid(tmp_path: Path, admitted: bool) -> None:
    """
    With the file permissions opened up (mode 666 in a world-searchable
    directory), the kernel-reported uid is all that stands in the way: a
    stranger is refused and logged by uid, unless admin_uids names it.
    """
    world = Path(tempfile.mkdtemp(prefix="oauthd-ctl-", dir="/tmp"))
    world.chmod(0o755)
    sock = world / "control.sock"
    config = tmp_path / "oauthd.toml"
    config.write_text(f"admin_uids = [{65534 if admitted else 4321}]\n")
    daemon = Daemon(tmp_path / "data", "--config", str(config), "--control", f"unix:{sock}:mode=666")
    try:
        code, output = run_as(65534, ["--socket", str(sock), "status"])
        if admitted:
            assert code == 0 and "Version" in output, output
        else:
            assert code == 1
            assert output.startswith(f"oauthctl: {sock}: the daemon closed the connection (is uid 65534 allowed")
            deadline = time.monotonic() + 5
            while "refused connection from uid 65534" not in daemon.output():
                assert time.monotonic() < deadline, daemon.output()
                time.sleep(0.05)
    finally:
        daemon.stop()
        shutil.rmtree(world)
