"""
A real Prometheus (Debian's C{prometheus} package) scrapes a real C{twistd
oauthd} with the scrape job the README gives, as written but for the
client's id, its secret file and the port: it gets its token with the
client credentials grant (its C{oauth2:} block) and reads
C{/api/v1/metrics}. The test waits until Prometheus's own HTTP API shows
the target up and answers a query for an C{oauthd_} series, and fails if
that does not happen within L{PATIENCE} seconds.

Skipped, saying why, where Prometheus is absent (as the browser test is
where Chromium is); C{.ci/run} installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import REPO, Daemon, free_port

PROMETHEUS = os.environ.get("OAUTHD_PROMETHEUS", "/usr/bin/prometheus")
PATIENCE = 60.0
README_PORT = "127.0.0.1:9478"
SECRET_FILE = "/etc/prometheus/oauthd-client-secret"

if not shutil.which(PROMETHEUS):
    pytest.skip(f"Prometheus is absent ({PROMETHEUS}): apt-get install prometheus",
                allow_module_level=True)


def readme_scrape_job() -> str:
    """
    The scrape job of the README's Monitoring section (the YAML block after
    its C{<!-- prometheus-scrape-config -->} marker).
    """
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- prometheus-scrape-config -->\s*```yaml\n(.*?)```", text, re.S)
    assert found, "README.md lacks its Prometheus scrape config"
    return found.group(1)


def oauthctl_json(sock: Path, *argv: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), "--json", *argv],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Prometheus:
    """
    Prometheus on a free loopback port, with its own storage directory.
    """

    def __init__(self, config: Path, work: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(work / "prometheus.log", "w+")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=work,
        )

    def api(self, path: str, **query: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path / "data")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.output()


def test_prometheus_scrapes_oauthd_with_its_oauth2_client(tmp_path: Path, daemon: Daemon) -> None:
    client = oauthctl_json(daemon.data / "control.sock", "clients", "add", "--name", "Prometheus",
                           "--scope", "metrics")
    secret = tmp_path / "client-secret"
    secret.write_text(client["secret"])
    secret.chmod(0o600)
    job = (readme_scrape_job().replace("CLIENT_ID", client["id"])
           .replace(SECRET_FILE, str(secret))
           .replace(README_PORT, f"127.0.0.1:{daemon.port}"))
    assert client["secret"] not in job
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                      + "".join(f"  {line}\n" for line in job.splitlines()))
    prometheus = Prometheus(config, tmp_path)
    try:
        targets, series = wait_for_a_scrape(prometheus)
    finally:
        prometheus.stop()
    assert [t["health"] for t in targets] == ["up"], (targets, prometheus.output())
    assert {s["metric"]["client"] for s in series} == {client["id"]}, series
    assert {s["metric"]["grant"] for s in series} == {"client_credentials"}, series


def wait_for_a_scrape(prometheus: Prometheus) -> tuple[list[Any], list[Any]]:
    """
    Prometheus's targets once one is up, and the series of tokens issued
    it holds once it has one: the scrape got a token and then the metrics
    (at least the token it was given is counted).

    @raise AssertionError: if that takes over L{PATIENCE} seconds, with
        what Prometheus said.
    """
    deadline = time.monotonic() + PATIENCE
    targets: list[Any] = []
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise AssertionError(f"Prometheus exited:\n{prometheus.output()}")
        try:
            targets = prometheus.api("targets")["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                series = prometheus.api("query", query="oauthd_tokens_issued_total")["result"]
                if series:
                    return targets, series
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape oauthd within {PATIENCE} s: targets {targets}\n"
                         f"{prometheus.output()}")
