"""
A PostgreSQL cluster of the tests' own, started once per test session (on
first use) and stopped at exit: C{initdb} in a temporary directory (as the
C{postgres} user when we run as root: initdb refuses root), a UNIX socket
only, C{fsync=off} for speed and C{synchronous_commit=on} as the daemon
wants.  Each test gets a fresh database from L{fresh_database}.

Without PostgreSQL (or psycopg) the tests that need it skip, unless
C{OAUTHD_REQUIRE_POSTGRES=1}, which makes them fail instead (CI sets it).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import json
import tempfile
from pathlib import Path

import pytest

REQUIRE = os.environ.get("OAUTHD_REQUIRE_POSTGRES") == "1"


def _binaries() -> str | None:
    """
    The directory of PostgreSQL's server programs, newest version first.
    """
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(directory, "pg_ctl")):
            return directory
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found else None


class Cluster:
    """
    A running cluster, reached on its socket directory as C{postgres}.
    """

    def __init__(self, binaries: str) -> None:
        self._root = tempfile.mkdtemp(prefix="oauthd-pg-")
        self.data = os.path.join(self._root, "data")
        self.sockets = os.path.join(self._root, "sockets")
        os.mkdir(self.sockets)
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chmod(self._root, 0o755)
            shutil.chown(self._root, "postgres")
            shutil.chown(self.sockets, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._pg_ctl = os.path.join(binaries, "pg_ctl")
        self._run([os.path.join(binaries, "initdb"), "-D", self.data, "-U", "postgres",
                   "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}'"
                   " -c fsync=off -c synchronous_commit=on -c full_page_writes=off"
                   " -c max_connections=200")
        self._options = options
        self.start_server()
        self._databases = itertools.count(1)
        atexit.register(self.stop)

    def start_server(self) -> None:
        self._run([self._pg_ctl, "-D", self.data, "-l", os.path.join(self._root, "log"),
                   "-o", self._options, "-w", "start"])

    def stop_server(self) -> None:
        """
        Stop the server (a test that restarts it starts it again).
        """
        self._run([self._pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"])

    def _run(self, command: list[str]) -> None:
        subprocess.run(self._as + command, check=True, capture_output=True)

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.sockets}&user=postgres"

    def fresh_database(self) -> str:
        """
        The URI of a new, empty database.
        """
        import psycopg

        name = f"test_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.uri(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.uri(name)

    def stop(self) -> None:
        if os.path.exists(self.data):
            subprocess.run(self._as + [self._pg_ctl, "-D", self.data, "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(self._root, ignore_errors=True)


_cluster: list[Cluster | str] = []


def cluster() -> Cluster:
    """
    The session's cluster, started on first use; skips the test (or fails
    it, under C{OAUTHD_REQUIRE_POSTGRES=1}) when there is none to start.
    """
    if not _cluster:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _cluster.append("psycopg is not installed (pip install 'psycopg[binary]')")
        else:
            binaries = _binaries()
            if binaries is None:
                _cluster.append("PostgreSQL is not installed (no pg_ctl)")
            else:
                try:
                    _cluster.append(Cluster(binaries))
                except (OSError, subprocess.CalledProcessError) as e:
                    detail = getattr(e, "stderr", b"") or b""
                    _cluster.append(f"PostgreSQL could not start: {e} {detail.decode(errors='replace')}")
    return usable(_cluster[0], REQUIRE)


def usable(found: Cluster | str, require: bool) -> Cluster:
    """
    C{found}, a cluster; or, if it is the reason there is none, skip the
    test, or fail it if C{require}.
    """
    if isinstance(found, str):
        if require:
            pytest.fail(f"OAUTHD_REQUIRE_POSTGRES=1, but {found}")
        pytest.skip(found)
    return found


def fresh_database() -> str:
    """
    The URI of a new, empty database in the session's cluster.
    """
    return cluster().fresh_database()


def shared_log_config(directory: Path, uri: str, **values: object) -> str:
    """
    A config file in C{directory} naming the shared log at C{uri}, a key
    file made for it (the same one for every node of a test that shares
    C{directory}), and C{values}: a daemon over a shared log needs both.
    """
    key = directory / "eventlog.key"
    if not key.exists():
        key.write_text(os.urandom(32).hex() + "\n")
        key.chmod(0o600)
    path = directory / f"oauthd-{len(list(directory.glob('oauthd-*.toml')))}.toml"
    values = {"eventlog": uri, "eventlog_secret_key_file": str(key), **values}
    lines = [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def shared_log_options(directory: Path, uri: str, **values: object) -> list[str]:
    """
    The daemon's options for L{shared_log_config}.
    """
    return ["--config", shared_log_config(directory, uri, **values)]
