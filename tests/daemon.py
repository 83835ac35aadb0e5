"""
Run the real C{twistd -n oauthd} as a subprocess, as a user would, for the few
end-to-end tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Daemon:
    """
    A running daemon on a free loopback port with its own data directory.
    """

    def __init__(
        self, data: Path, *args: str, twistd_args: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param twistd_args: twistd's own options (C{--logfile}).
        @param environ: variables set for the daemon (C{NOTIFY_SOCKET}).
        """
        self.port = free_port()
        self.data = data
        self.url = f"http://127.0.0.1:{self.port}"
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("NOTIFY_SOCKET", None)
        env.update(environ or {})
        self.log = open(data.parent / f"twistd-{self.port}.log", "w+")
        self.process = subprocess.Popen(
            [twistd, "--nodaemon", "--pidfile=", *twistd_args, "oauthd",
             "--listen", f"tcp:{self.port}:interface=127.0.0.1",
             "--data", str(data), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=data.parent,
        )
        # Ready means answering HTTP: the port opens before the reactor runs.
        deadline = time.monotonic() + 30
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"oauthd did not start:\n{self.output()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        if not port_is_open(self.port):
            return False
        try:
            return self.get_json("/healthz")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        """
        What the daemon printed so far (all of it once stopped).
        """
        if self.log.closed:
            return self.final_output
        self.log.seek(0)
        return self.log.read()

    def get_json(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def stop(self, timeout: float = 5) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.final_output = self.output()
            self.log.close()


def seed(data: Path, build: Any) -> Any:
    """
    L{oauthd.testing.seed} on C{data}, at the time now: the daemon that then
    starts on it runs on the real clock.
    """
    from oauthd.testing import seed as seed_directory

    return seed_directory(str(data), time.time(), build)
