"""
Tests for the twistd plugin, the options and the service tree.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.internet.testing import EventLoggingObserver
from twisted.plugin import IPlugin, getPlugins
from twisted.web.server import Site

from oauthd import tap
from oauthd.config import DEFAULT_PORT, ConfigError, build_config, read_config_file
from oauthd.control.server import ControlFactory
from oauthd.services.audit import AuditTrail
from oauthd.state.store import Store
from tests.helpers import InlineMemoryReactor
from oauthd.testing import InlinePool


def parsed(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def built(options: tap.Options, reactor: MemoryReactorClock | None = None) -> tap.Daemon:
    """
    The service tree for C{options} on a memory reactor, journal writes inline.
    """
    return tap.build_service(options.config(), reactor or InlineMemoryReactor(), journal_pool=InlinePool())


def test_plugin_is_discoverable() -> None:
    """
    twistd finds a plugin named oauthd whose makeService is oauthd.tap's.
    """
    import twisted.plugins

    found = [p for p in getPlugins(IServiceMaker, twisted.plugins) if p.tapname == "oauthd"]
    assert len(found) == 1
    (plugin,) = found
    assert IServiceMaker.providedBy(plugin)
    assert IPlugin.providedBy(plugin)
    assert plugin.makeService is tap.makeService
    assert plugin.options is tap.Options


def test_default_listeners(tmp_path: Path) -> None:
    """
    With no options, HTTP listens on loopback only, on the documented port, and
    the control socket is a mode-0600 UNIX socket inside a 0700 data directory.
    """
    data = tmp_path / "data"
    reactor = InlineMemoryReactor()
    old = os.umask(0)
    try:
        service = built(parsed("--data", str(data)), reactor)
        service.privilegedStartService()
        service.startService()
    finally:
        os.umask(old)
    (port, factory, backlog, interface) = reactor.tcpServers[0]
    assert (port, interface) == (DEFAULT_PORT, "127.0.0.1")
    assert isinstance(factory, Site)
    assert factory.displayTracebacks is False
    (path, control, _, mode, want_pid) = reactor.unixServers[0]
    assert path == str(data / "control.sock")
    assert isinstance(control, ControlFactory)
    assert mode == 0o600
    assert data.stat().st_mode & 0o777 == 0o700
    service.stopService()


class ThreadsMemoryReactor(InlineMemoryReactor):
    """
    A memory reactor whose calls from threads wait for the test to run them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue[Callable[[], object]] = queue.Queue()

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        self.from_threads.put(lambda: f(*args, **kwargs))


def test_the_audit_trails_writer_is_paired_with_the_journals(tmp_path: Path) -> None:
    """
    The audit trail's writer thread is the journal's partner: a write of
    the trail that ends while the journal's job runs comes back with that
    job's result, one wake-up of the reactor for both.
    """
    reactor = ThreadsMemoryReactor()
    service = tap.build_service(build_config({"data": str(tmp_path / "data")}), reactor)
    service.privilegedStartService()
    service.startService()
    trail = service.last
    assert isinstance(trail, AuditTrail)
    (store,) = [s for s in service if isinstance(s, Store)]
    held, release = threading.Event(), threading.Event()
    journal_job = store.log.writer.run(lambda: (held.set(), release.wait(30)))
    assert held.wait(30)
    recorded = trail.record_change("test.change", "ok", {})
    with pytest.raises(queue.Empty):
        reactor.from_threads.get(timeout=0.5)
    release.set()
    reactor.from_threads.get(timeout=30)()
    assert journal_job.called and recorded.called
    stopped = service.stopService()
    while not stopped.called:
        reactor.from_threads.get(timeout=30)()


def test_listen_is_repeatable(tmp_path: Path) -> None:
    """
    Each --listen adds an HTTP listener; the issuer names the first one's port.
    """
    reactor = MemoryReactorClock()
    options = parsed(
        "--data", str(tmp_path),
        "--listen", "tcp:8001:interface=127.0.0.1",
        "--listen", r"tcp:8002:interface=\:\:1",
    )
    service = built(options, reactor)
    service.privilegedStartService()
    assert [(s[0], s[3]) for s in reactor.tcpServers] == [(8001, "127.0.0.1"), (8002, "::1")]
    assert options.config().issuer == "http://127.0.0.1:8001"


def test_command_line_overrides_file(tmp_path: Path) -> None:
    """
    A value given on the command line wins over the config file's.
    """
    conf = tmp_path / "oauthd.toml"
    conf.write_text('issuer = "https://file.example"\nbcrypt_cost = 10\n')
    config = parsed("-c", str(conf), "--issuer", "https://cli.example/").config()
    assert config.issuer == "https://cli.example"
    assert config.bcrypt_cost == 10


def test_state_directory_is_the_default_data_dir() -> None:
    """
    Under systemd, $STATE_DIRECTORY is the data directory and holds the socket.
    """
    config = parsed().config({"STATE_DIRECTORY": "/var/lib/oauthd"})
    assert config.data == "/var/lib/oauthd"
    assert config.control == "unix:/var/lib/oauthd/control.sock:mode=600"
    assert parsed().config({}).data == "./oauthd-data"


def test_plain_http_on_public_interface_warns(tmp_path: Path) -> None:
    """
    A non-loopback listener with an http issuer logs a warning; a loopback one
    does not.
    """
    observer = EventLoggingObserver.createWithCleanup(_Cleanup(), globalLogPublisher)
    built(parsed("--data", str(tmp_path / "1"), "--listen", "tcp:0"))
    warnings = [e for e in observer if "non-loopback" in e["log_format"]]
    assert len(warnings) == 1
    assert warnings[0]["endpoint"] == "tcp:0"
    _Cleanup.run()
    observer = EventLoggingObserver.createWithCleanup(_Cleanup(), globalLogPublisher)
    built(parsed("--data", str(tmp_path / "2"), "--listen", "tcp:0", "--issuer", "https://a.example"))
    built(parsed("--data", str(tmp_path / "3"), "--listen", "unix:x.sock"))
    assert not [e for e in observer if "non-loopback" in e["log_format"]]
    _Cleanup.run()


def test_plain_http_issuer_on_a_network_name_warns_about_the_cookies(tmp_path: Path) -> None:
    """
    Behind a loopback listener, a plain-http issuer on a network name still
    sends the sign-in pages' cookies unprotected: one warning says so.
    """
    observer = EventLoggingObserver.createWithCleanup(_Cleanup(), globalLogPublisher)
    built(parsed("--data", str(tmp_path / "1"), "--listen", "unix:x.sock",
                 "--issuer", "http://photos.lan:2342"))
    warnings = [e for e in observer if "non-loopback" in e["log_format"]]
    assert len(warnings) == 1 and "cookies" in warnings[0]["log_format"]
    assert warnings[0]["issuer"] == "http://photos.lan:2342"
    _Cleanup.run()


class _Cleanup:
    """
    The one method EventLoggingObserver.createWithCleanup needs of a test case.
    """

    pending: list[object] = []

    def addCleanup(self, f: object, *args: object) -> None:
        _Cleanup.pending.append((f, args))

    @staticmethod
    def run() -> None:
        while _Cleanup.pending:
            f, args = _Cleanup.pending.pop()
            f(*args)  # type: ignore[operator]


CONFIG_ERRORS = [
    ("bogus = 1\n", "unknown key 'bogus'"),
    ("bcrypt_cost = 'high'\n", "bcrypt_cost: expected int, got str"),
    ("bcrypt_cost = true\n", "bcrypt_cost: expected int, got bool"),
    ("bcrypt_cost = 99\n", "bcrypt_cost: 99 is not between 4 and 16"),
    ("listen = 'tcp:80'\n", "listen: expected list, got str"),
    ("listen = [1]\n", "listen: expected a list of str"),
    ("listen = []\n", "listen: at least one endpoint is needed"),
    ("access_log = 1\n", "access_log: expected bool, got int"),
    ("listen = ['tcp:notaport']\n", "listen: bad endpoint 'tcp:notaport'"),
    ("listen = ['carrier-pigeon:1']\n", "listen: bad endpoint 'carrier-pigeon:1'"),
    ("control = 'unix'\n", "control: bad endpoint 'unix'"),
    ("issuer = 'ftp://x'\n", "issuer: 'ftp://x' is not an absolute http(s) URL"),
    ("issuer = 'https://x/?a=b'\n", "issuer: 'https://x/?a=b' must not have a query or fragment"),
    ("scopes = ['ok', 'not ok']\n", "scopes: 'not ok' is not a valid scope name"),
    ("issuer = \n", "invalid TOML"),
    ("scopes = ['photos']\nregistration_scopes = ['email']\n",
     "registration_scopes: 'email' is not one of the scopes"),
    ("registration = 'anyone'\n", "registration: "),
]


@pytest.mark.parametrize("text, message", CONFIG_ERRORS)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    """
    Each kind of config mistake is one line naming the key (or file) and what
    is wrong.
    """
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    with pytest.raises(ConfigError) as raised:
        parsed("-c", str(conf)).config()
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    """
    A missing config file is named in the message.
    """
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=f"{missing}: cannot read: No such file"):
        read_config_file(missing)


def test_config_error_exits_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """
    makeService turns a config error into exit status 1 and one line on stderr.
    """
    with pytest.raises(SystemExit) as raised:
        tap.makeService(parsed("--issuer", "nonsense", "--data", str(tmp_path)), MemoryReactorClock())
    assert raised.value.code == 1
    assert capfd.readouterr().err == "oauthd: issuer: 'nonsense' is not an absolute http(s) URL\n"


def test_port_taken_exits_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """
    A listener that cannot bind ends start-up with one line, not a traceback.
    """
    from twisted.internet import reactor

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        service = tap.build_service(
            parsed("--data", str(tmp_path), "--listen", f"tcp:{port}:interface=127.0.0.1").config(),
            reactor,
            journal_pool=InlinePool(),
        )
        with pytest.raises(SystemExit):
            service.privilegedStartService()
    err = capfd.readouterr().err
    assert err.startswith(f"oauthd: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_ready_notification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Once started, the daemon sends READY=1 to $NOTIFY_SOCKET (Type=notify).
    """
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        service = built(parsed("--data", str(tmp_path / "d")))
        service.privilegedStartService()
        service.startService()
        assert manager.recv(100) == b"READY=1"
        service.stopService()
        assert manager.recv(100) == b"STOPPING=1"


def test_data_dir_that_cannot_be_made(tmp_path: Path) -> None:
    """
    A data directory under a file is a config error naming the directory.
    """
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="data: cannot use"):
        tap.build_service(build_config({"data": str(blocker / "sub")}), InlineMemoryReactor())


def test_registration_scopes_default_to_the_configured_openid_ones() -> None:
    """
    A config naming its own scopes, as one from before registration may,
    still loads: the default registration scopes are those it has.
    """
    assert build_config({"scopes": ["photos", "openid"]}).registration_scopes == ("openid",)
    assert build_config({}).registration_scopes == ("email", "openid", "profile")


def test_sample_config_is_complete_and_default() -> None:
    """
    etc/oauthd.toml sets every key, each to its default.
    """
    from oauthd.config import SETTINGS

    sample = Path(__file__).parent.parent / "etc" / "oauthd.toml"
    values = read_config_file(str(sample))
    assert set(values) == set(SETTINGS)
    assert build_config(values, {}) == build_config({}, {})


@pytest.mark.parametrize("enabled", [False, True])
def test_access_log_is_optional(enabled: bool) -> None:
    """
    The per-request access log is off unless access_log is set; the audit
    events cover every issue, refusal and revocation either way.
    """
    from twisted.web.test.requesthelper import DummyRequest

    from tests.helpers import make_config, make_http

    site = make_http(make_config(access_log=enabled)).site()
    observer = EventLoggingObserver.createWithCleanup(_Cleanup(), globalLogPublisher)
    request = DummyRequest([b"healthz"])
    request.code = 200
    request.sentLength = 15  # type: ignore[attr-defined]
    site.startFactory()
    site.log(request)
    site.stopFactory()
    _Cleanup.run()
    from twisted.logger import formatEvent

    assert len([e for e in observer if '"GET ' in formatEvent(e)]) == int(enabled)


def test_ready_only_once_caught_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    READY=1 waits until the state has caught up with the event log; a
    failure to catch up is tried again a second later.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from oauthd.eventlog import LogUnavailable

    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        service = built(parsed("--data", str(tmp_path / "d")))
        syncs: list[Deferred[None]] = []

        def sync() -> Deferred[None]:
            syncs.append(Deferred())
            return syncs[-1]

        service.caught_up = sync
        clock = service.clock = Clock()
        service.privilegedStartService()
        service.startService()
        syncs[0].errback(LogUnavailable("down"))
        with pytest.raises(BlockingIOError):
            manager.recv(100)
        clock.advance(1)
        syncs[1].callback(None)
        assert manager.recv(100) == b"READY=1"
        service.stopService()


def test_exit_to_restart() -> None:
    """
    A node that compaction passed stops cleanly and exits with status 1,
    for systemd (Restart=on-failure) to start it again from the snapshot.
    """
    reactor = MemoryReactorClock()
    reactor.running = True
    tap.exit_to_restart(reactor, "compaction passed this node")
    assert reactor.hasStopped
    [(function, args, _)] = reactor.triggers["after"]["shutdown"]
    assert (function, args) == (os._exit, (1,))
