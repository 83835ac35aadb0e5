"""
Reloading the configuration, in memory: what a reload changes and what it
keeps (L{oauthd.reload.reconcile}), the one function that puts a new
configuration into the running objects (L{oauthd.reload.Running}), and the
reloader's refusals, notifications, log and audit. The real daemon's
SIGHUP and C{oauthctl reload} are in L{tests.test_reload_daemon}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import FileLogObserver, LogPublisher, formatEvent, globalLogPublisher
from twisted.python.logfile import LogFile

from oauthd.config import ConfigError, Reloaded
from oauthd.protocol.limits import LOGIN_IP, TOKEN_IP, RateLimiter
from oauthd.reload import Reloader, Running, reconcile
from oauthd.services.audit import AuditTrail, TrailLimits
from oauthd.services.logfiles import reopen_log_files
from oauthd.testing import InlinePool, config_for_tests
from oauthd.web.api import OAuthHTTP
from tests.helpers import InlineMemoryReactor
from tests.oauth_helpers import OAuthCase, bearer

USERINFO = "/api/v1/oauth/userinfo"


def test_reconcile_takes_the_live_keys_and_keeps_the_restart_ones() -> None:
    running = config_for_tests()
    wanted = config_for_tests(session_ttl=3600, limit_token_ip=[2, 600], hash_threads=4,
                              listen=["tcp:9999:interface=127.0.0.1"])
    config, outcome = reconcile(running, wanted)
    assert outcome == Reloaded(
        changed=(("session_ttl", "86400", "3600"), ("limit_token_ip", "[60, 10]", "[2, 600]")),
        restart=("listen", "hash_threads"),
    )
    assert (config.session_ttl, config.limit_token_ip) == (3600, (2, 600))
    assert (config.hash_threads, config.listen) == (running.hash_threads, running.listen)


def test_reconcile_of_the_same_configuration_changes_nothing() -> None:
    running = config_for_tests()
    config, outcome = reconcile(running, config_for_tests())
    assert (config, outcome) == (running, Reloaded())


@pytest.mark.parametrize("pair", [[1], [0, 60], [10, 0], [10, 86401], [True, 60], [1, 2, 3]])
def test_a_rate_limit_is_a_burst_and_seconds(pair: list[Any]) -> None:
    with pytest.raises(ConfigError, match=r"limit_login_ip: expected \[burst, seconds\]"):
        config_for_tests(limit_login_ip=pair)


def test_the_limiter_counts_by_the_configured_rule() -> None:
    now = [1000.0]
    limiter = RateLimiter(lambda: now[0])
    limiter.configure(config_for_tests(limit_login_ip=[2, 100], limit_entries=1000))
    limiter.charge(LOGIN_IP, "a")
    assert limiter.retry_after(LOGIN_IP, "a") == 0
    limiter.charge(LOGIN_IP, "a")
    assert limiter.retry_after(LOGIN_IP, "a") == 100
    # The other rules keep their defaults.
    limiter.charge(TOKEN_IP, "a")
    assert limiter.retry_after(TOKEN_IP, "a") == 0
    assert limiter.max_entries == 1000


class RunningTests(OAuthCase):
    """
    A reload changes what the HTTP API does from the next request on.
    """

    def setUp(self) -> None:
        super().setUp()
        self.notified: list[str] = []
        self.wanted = self.config
        self.reloader = Reloader(lambda: self.wanted, Running(self.server.ctx), self.server.store,
                                 notify=self.notified.append, reopen=list)

    def reload(self, **values: Any) -> Reloaded:
        self.wanted = config_for_tests(**values)
        return self.reloader.reload(via="test")

    def wrong_token(self) -> int:
        return self.request("GET", USERINFO, headers=bearer("sess" + "x" * 40)).code

    def test_a_reloaded_rate_limit_takes_effect(self) -> None:
        assert [self.wrong_token() for _ in range(3)] == [401, 401, 401]
        self.clock.advance(3600)
        outcome = self.reload(limit_token_ip=[2, 600])
        assert outcome.changed == (("limit_token_ip", "[60, 10]", "[2, 600]"),)
        assert [self.wrong_token() for _ in range(3)] == [401, 401, 429]

    def test_reloaded_scopes_are_served(self) -> None:
        scopes = [*self.config.scopes, "library"]
        self.reload(scopes=scopes)
        document = self.request("GET", "/.well-known/openid-configuration").body
        assert "library" in document["scopes_supported"]

    def test_a_reloaded_registration_policy_takes_effect(self) -> None:
        metadata = {"redirect_uris": ["https://app.example/cb"], "client_name": "App"}
        refused = self.request("POST", "/api/v1/oauth/register", json_body=metadata)
        assert refused.code == 401, refused
        self.reload(registration="open")
        registered = self.request("POST", "/api/v1/oauth/register", json_body=metadata)
        assert registered.code == 201, registered

    def test_a_reload_is_notified_logged_and_audited(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.reload(session_ttl=600, hash_threads=3)
        assert self.notified[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert int(self.notified[0].rsplit("=", 1)[1]) > 0
        assert self.notified[1:] == ["READY=1"]
        text = [formatEvent(e) for e in events]
        assert "configuration reloaded: session_ttl changed from 86400 to 600" in text
        assert any("hash_threads changed but needs a restart; running with 2" in line for line in text)
        audited = [e for e in events if e.get("audit_event") == "config.reload"]
        assert [(e["outcome"], e["changed"], e["restart"], e["via"]) for e in audited] == [
            ("ok", "session_ttl", "hash_threads", "test")]

    def test_a_configuration_that_does_not_load_changes_nothing(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        running = self.server.ctx.config

        def broken() -> Any:
            raise ConfigError("oauthd.toml: session_ttl: 5 is not between 60 and 2678400")

        self.reloader.read = broken
        with pytest.raises(ConfigError):
            self.reloader.reload(via="test")
        assert self.server.ctx.config is running
        assert self.notified[1:] == ["READY=1"]
        assert any("configuration not reloaded, the running one is kept: oauthd.toml: session_ttl"
                   in formatEvent(e) for e in events)
        audited = [e for e in events if e.get("audit_event") == "config.reload"]
        assert [e["outcome"] for e in audited] == ["failed"]


def test_running_applies_to_the_site_the_trail_and_the_hasher(tmp_path: Path) -> None:
    from tests.helpers import make_server

    server = make_server()
    site = OAuthHTTP(server.ctx, server.store).site()
    reactor = InlineMemoryReactor()
    trail = AuditTrail(str(tmp_path), reactor, reactor, pool=InlinePool(), limits=TrailLimits())
    hasher = server.ctx.hasher
    running = Running(server.ctx, site, trail, hasher)  # type: ignore[arg-type]
    config = config_for_tests(access_log=True, max_body=4096, header_timeout=5, body_timeout=6,
                              idle_timeout=7, audit_keep_days=3, audit_keep_bytes=2 << 20,
                              audit_rotate_bytes=1 << 20, audit_backlog=500, bcrypt_cost=5)
    running.apply(config)
    assert server.ctx.config is config
    assert (site.access_log, site.max_body, site.header_timeout, site.body_timeout, site.timeOut) == (
        True, 4096, 5, 6, 7)
    assert trail.limits == TrailLimits(1 << 20, 2 << 20, 3, 500)
    assert hasher.cost == 5  # type: ignore[attr-defined]


def test_reopen_log_files_writes_to_a_new_file_after_a_rotation(tmp_path: Path) -> None:
    """
    logrotate moves twistd's log aside: after the reopen, lines go to a new
    file at the configured path, not the moved one.
    """
    path = tmp_path / "twistd.log"
    logfile = LogFile.fromFullPath(str(path))
    publisher = LogPublisher(FileLogObserver(logfile, lambda event: event["text"] + "\n"))
    publisher({"text": "before"})
    path.rename(tmp_path / "twistd.log.1")
    assert reopen_log_files(publisher) == [str(path)]
    publisher({"text": "after"})
    logfile.close()
    assert (tmp_path / "twistd.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"


def test_the_reload_command_in_memory() -> None:
    """
    C{Reload} over the control socket: the outcome, the refusal of a
    configuration that does not load, and a daemon that cannot reload.
    """
    from oauthd.control.wire import ControlError, InvalidValue, Reload
    from tests.test_control import Harness

    wanted: list[Any] = [config_for_tests(session_ttl=600, max_connections=10)]

    def read() -> Any:
        if isinstance(wanted[0], ConfigError):
            raise wanted[0]
        return wanted[0]

    harness = Harness()
    reloader = Reloader(read, Running(harness.server.ctx), harness.server.store, notify=[].append,
                        reopen=list)
    harness.factory.reload = reloader.reload
    link = harness.connect()
    assert link.call(Reload) == {"changed": '[["session_ttl", "86400", "600"]]',
                                 "restart": '["max_connections"]'}
    wanted[0] = ConfigError("oauthd.toml: unknown key 'sesion_ttl'")
    refused = link.fails(Reload)
    assert isinstance(refused, InvalidValue)
    assert str(refused) == ("configuration not reloaded, the running one is kept: "
                            "oauthd.toml: unknown key 'sesion_ttl'")
    assert harness.server.ctx.config.session_ttl == 600
    cannot = Harness().connect().fails(Reload)
    assert type(cannot) is ControlError
    assert str(cannot) == "this daemon cannot reload its configuration"


@pytest.mark.parametrize("endpoint", [
    "ssl:8443:privateKey=/nonexistent/key.pem", "ssl:8443:privateKey=/etc/hostname",
    "systemd:domain=INET:index=0",
])
def test_an_endpoint_that_cannot_be_parsed_is_a_configuration_that_does_not_load(
    tmp_path: Path, endpoint: str,
) -> None:
    """
    Parsing an endpoint may read a key file or the inherited descriptors: a
    failure there is the file's mistake (INVALID_VALUE naming the key, the
    running configuration kept), not an internal error of the reload.
    """
    from oauthd.config import build_config, read_config_file
    from oauthd.control.wire import InvalidValue, Reload
    from tests.test_control import Harness

    path = tmp_path / "oauthd.toml"
    path.write_text(f'session_ttl = 600\nlisten = ["{endpoint}"]\n')
    harness = Harness()
    running = harness.server.ctx.config
    reloader = Reloader(lambda: build_config(read_config_file(str(path))), Running(harness.server.ctx),
                        harness.server.store, notify=[].append, reopen=list)
    harness.factory.reload = reloader.reload
    refused = harness.connect().fails(Reload)
    assert isinstance(refused, InvalidValue)
    assert "configuration not reloaded, the running one is kept: listen: bad endpoint" in str(refused)
    assert harness.server.ctx.config is running
