"""
C{twistd oauthd}: command-line options and the service tree.

This is the only module that may resolve the global reactor, and it does so
inside L{makeService}, never at import time.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from oauthd.services.notify import sd_notify
from oauthd.config import (
    DEFAULT_PORT,
    Config,
    ConfigError,
    build_config,
    is_loopback_endpoint,
    is_loopback_host,
    read_config_file,
)

from oauthd.interfaces import IEventLog
from oauthd.opening import exit_to_restart as exit_to_restart, open_event_log, share_rate_limits

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the oauthd authorization server. With no options it serves HTTP on "
        f"127.0.0.1:{DEFAULT_PORT} and keeps its data in $STATE_DIRECTORY or "
        "./oauthd-data. Options given here override the --config file."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file [default: none, embedded defaults]"],
        ["control", None, None, "control socket endpoint [default: unix:DATA/control.sock:mode=600]"],
        ["data", "d", None, "data directory [default: $STATE_DIRECTORY or ./oauthd-data]"],
        ["eventlog", None, None, "a postgresql:// URI of a shared event log [default: the data directory's journal]"],
        ["issuer", None, None, "issuer URL [default: http://127.0.0.1:PORT]"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        HTTP endpoint, a Twisted endpoint string; repeat for several
        [default: tcp:9478:interface=127.0.0.1]
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def config(self, environ: Mapping[str, str] = os.environ) -> Config:
        """
        The configuration: the file's values, overridden by the options given.

        @raise ConfigError: with one line saying what is wrong.
        """
        values: dict[str, object] = {}
        if self["config"] is not None:
            values.update(read_config_file(self["config"]))
        if self["listen"]:
            values["listen"] = list(self["listen"])
        for key in ("control", "data", "issuer", "eventlog"):
            if self[key] is not None:
                values[key] = self[key]
        return build_config(values, environ)


def _exit(message: str) -> NoReturn:
    """
    End start-up with one line on stderr and a non-zero status; a user's
    mistake deserves a sentence, not a traceback.
    """
    # twistd has redirected sys.stderr into its log by now; the user is
    # reading the terminal or the journal, so write to the real stderr.
    print(f"oauthd: {message}", file=sys.__stderr__ or sys.stderr)
    raise SystemExit(1)


class Daemon(MultiService):
    """
    The root service. It turns a failure to bind into a one-line exit, and
    tells systemd it is ready once every listener is bound.

    @ivar last: a service that starts before the others and stops after all
        of them have (the audit trail, which records what they do until the
        end), or C{None}.
    @ivar reloader: reloads the configuration (L{oauthd.reload.Reloader}).
    """

    last: Service | None = None
    reloader: Any = None
    # Fires once the state has caught up with the event log (a shared one
    # may have moved on since it was read at start), and the clock to try
    # again by.
    caught_up: Callable[[], Deferred[None]] | None = None
    clock: Any = None

    def privilegedStartService(self) -> None:
        with _listen_or_exit():
            super().privilegedStartService()

    def startService(self) -> None:
        if self.last is not None:
            self.last.startService()
        with _listen_or_exit():
            super().startService()
        self._ready()

    def _ready(self) -> None:
        if self.caught_up is None:
            sd_notify("READY=1")
            return

        def not_yet(failure: Any) -> None:
            log.warn("not ready: catching up with the event log failed ({why}); trying again",
                     why=failure.getErrorMessage())
            if self.running:
                self.clock.callLater(1, self._ready)

        self.caught_up().addCallbacks(lambda _: sd_notify("READY=1"), not_yet)

    def stopService(self) -> Deferred[None]:
        sd_notify("STOPPING=1")
        stopped: Deferred[Any] = maybeDeferred(super().stopService)
        last = self.last
        if last is not None:
            stopped.addCallback(lambda _: last.stopService())
        return stopped


@contextmanager
def _listen_or_exit() -> Iterator[None]:
    """
    Turn a listener that cannot bind (with twistd it binds in either start
    step) into a one-line exit.
    """
    try:
        yield
    except CannotListenError as e:
        _exit(f"cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}")
    except ConfigError as e:
        # The control socket cannot be given to the admin group.
        _exit(str(e))


@contextmanager
def collector_paused() -> Iterator[None]:
    """
    Pause the cyclic garbage collector meanwhile: replaying a big journal
    makes lists and dicts that would set it off again and again, each time
    walking all of them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_data_dir(path: str, euid: int | None = None) -> None:
    """
    Create the data directory if needed, private (0700) whatever the umask,
    since it holds the journal and the control socket; refuse one that
    another user controls or that is open to others (see
    L{oauthd.eventlog.files}).

    @param euid: the user to check for instead of the effective uid (tests).
    """
    from oauthd.eventlog.files import make_private_directory

    try:
        make_private_directory(path, euid=euid)
    except OSError as e:
        raise ConfigError(f"data: cannot use {path!r}: {e.strerror}") from None


def check_control_directory(config: Config, euid: int | None = None) -> None:
    """
    Refuse a control socket in an existing directory that belongs neither
    to the user we run as nor to root: its owner could swap the socket for
    a link to a file of ours between the bind and the chmod.
    """
    from oauthd.control.wire import unix_path
    from oauthd.eventlog.files import check_owner

    path = unix_path(config.control)
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    try:
        check_owner(parent, os.stat(parent).st_uid, os.geteuid() if euid is None else euid)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"control: {e.strerror}") from None


def give_subject_ids(store: Any, ctx: Any) -> None:
    """
    Give the users of a journal from before subject ids theirs, once: the
    records make it durable, so the next start finds nothing to do.
    """
    from oauthd.protocol.subjects import migration

    given = migration(ctx.state, ctx.random_bytes)
    if not given.records:
        return
    log.info("gave {count} users a stable subject id: their OpenID 'sub' is now it, not their name",
             count=len(given.records))
    store.commit(given).addErrback(
        lambda failure: log.failure("the subject ids could not be written", failure))


def anchor_trail(trail: Any, store: Any, reactor: Any, run: Any = None, node: str = "") -> Any:
    """
    Keep where the audit trail begins in the journal (retention records it
    before removing files, see L{oauthd.state.audit_anchor}), and return the
    trail's reader for the control socket. A journal without an anchor (a
    new one, or an older oauthd's) gets one now, once: where the trail
    begins, with a warning if an older oauthd removed its first files.

    @param run: runs the reader's work off the reactor; by default in the
        reactor's thread pool (tests pass one that runs inline).
    @param node: this node's id over a shared log, whose trail has an anchor
        of its own.
    """
    from twisted.internet.threads import deferToThreadPool

    from oauthd.control.wire import PAGE_BYTES
    from oauthd.services.audit_files import GENESIS, trail_begins
    from oauthd.services.audit_reader import TrailReader
    from oauthd.state.audit_anchor import AuditAnchored
    from oauthd.state.decision import Decision

    def anchor(seq: int, previous: str) -> Deferred[Any]:
        committed: Deferred[Any] = store.commit(Decision(None, records=[AuditAnchored(seq, previous, node)]))
        return committed

    trail.retention.anchor = anchor
    if not store.state.audit_anchor.has(node):
        begins = trail_begins(trail.directory)
        # (A journal copied into a shared log holds where this trail begins
        # as the single daemon's anchor.)
        if begins is not None and begins != store.state.audit_anchor.of(""):
            log.warn("audit trail {path}: it begins at seq {seq} and the journal did not say so (an"
                     " older oauthd removed its first files): anchored there", path=trail.path, seq=begins[0])
        # Once the reactor runs (the journal writes from a thread).
        reactor.callLater(0, lambda: anchor(*(begins or (1, GENESIS))).addErrback(
            lambda failure: log.failure("anchoring the audit trail", failure)))
    if run is None:
        run = lambda work: deferToThreadPool(reactor, reactor.getThreadPool(), work)  # noqa: E731
    return TrailReader(trail, run, reactor, PAGE_BYTES, node=node)


def follow_shared(store: Any, relay: Any, trail: Any) -> Service:
    """
    Make C{store} a node of its shared log (L{oauthd.state.follower.follow})
    whose trail gets every node's changes as the log delivers them, once
    each (L{oauthd.services.cluster_audit}); C{relay} held those replayed.

    @return: the service that writes them, to be stopped after the log.
    """
    from oauthd.services.cluster_audit import ClusterTrail
    from oauthd.state.follower import follow

    cluster = ClusterTrail(trail, relay.node, lambda: int(store.log.position))
    cluster.start(relay.begins, store.log.position)
    relay.attach(cluster.write)
    follow(store, relay)
    return cluster


def build_service(
    config: Config, reactor: Any, journal_pool: Any = None, journal: IEventLog | None = None,
    euid: int | None = None, reread: Callable[[], Config] | None = None,
) -> Daemon:
    """
    Compose the daemon's services under one root. Loading the journal blocks,
    which is fine: the reactor is not running yet.

    @param journal_pool: runs the journal's writes; by default the journal
        starts a thread of its own (tests pass one that runs inline).
    @param journal: the event log to use instead of the data directory's
        journal (a benchmark measures the cost of durability with an
        in-memory one).
    @param euid: the user whose directories these must be, instead of the
        effective uid (tests).
    @param reread: reads the configuration again, for a reload (by default
        it is C{config} again).
    @raise ConfigError: if the data directory or its journal cannot be used.
    """
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    from oauthd.control.keys import KeyKeeper
    from oauthd.control.listen import control_service
    from oauthd.control.peer import resolve_group
    from oauthd.control.server import ControlFactory
    from oauthd.eventlog import FileJournal, JournalError
    from oauthd.protocol.context import Context
    from oauthd.reload import Reloader, Running
    from oauthd.services.audit import AuditTrail, TrailLimits
    from oauthd.services.fdlimit import make_room
    from oauthd.services.hashing import PasswordHasher, ThreadPoolService, usual_cost
    from oauthd.services.metrics import Metrics, watch
    from oauthd.state.audit_relay import AuditRelay
    from oauthd.state.follower import replayed
    from oauthd.state.store import Store
    from oauthd.web.api import OAuthHTTP

    make_data_dir(config.data, euid)
    check_control_directory(config, euid)
    metrics = Metrics()
    if journal is None:
        try:
            journal = open_event_log(config, reactor, journal_pool, metrics)
        except (JournalError, OSError) as e:
            raise ConfigError(str(e)) from None
    # Over a shared log, each change's audit events travel with it.
    relay = AuditRelay(getattr(journal, "node", "")) if config.eventlog else None
    try:
        with collector_paused():
            state = replayed(journal, reactor.seconds(), relay)
    except ValueError as e:
        raise ConfigError(f"{getattr(journal, 'path', 'journal')}: {e}") from None
    # What replay built lives as long as the process: out of the collector's
    # reach, it is never walked again.
    gc.freeze()
    try:
        limits = TrailLimits(config.audit_rotate_bytes, config.audit_keep_bytes,
                             config.audit_keep_days, config.audit_backlog)
        # The two writer threads, paired: a change's journal group and audit
        # lines are synced side by side and come back with one wake-up.
        partner = journal.writer if isinstance(journal, FileJournal) else None
        trail = AuditTrail(config.data, reactor, reactor, limits=limits, partner=partner)
    except OSError as e:
        raise ConfigError(f"data: cannot use the audit trail in {config.data!r}: {e.strerror}") from None
    store = Store(state, journal, reactor, trail)
    cluster = None
    if relay is not None:
        # Shared with other daemons: memory changes as the log delivers.
        cluster = follow_shared(store, relay, trail)
    reader = anchor_trail(trail, store, reactor, node=relay.node if relay is not None else "")
    root = Daemon()
    root.caught_up, root.clock = journal.sync, reactor
    # The trail stops after everything else (see Daemon).
    root.last = trail
    if cluster is not None:
        # Stopped after the store (which closes the log).
        cluster.setServiceParent(root)
    # Services stop in the reverse order: listeners first, the store (which
    # flushes the journal) last.
    store.setServiceParent(root)
    hash_pool = ThreadPool(minthreads=0, maxthreads=config.hash_threads, name="oauthd-bcrypt")
    ThreadPoolService(hash_pool).setServiceParent(root)
    # Unknown users are checked against a hash of the cost most stored
    # hashes have (until the next start, as logins rehash them).
    dummy_cost = usual_cost((user.password_hash for user in state.users.values()), config.bcrypt_cost)
    hasher = PasswordHasher(reactor, hash_pool, config.bcrypt_cost, workers=config.hash_threads,
                            dummy_cost=dummy_cost)
    ctx = Context(store.state, config, reactor, hasher,
                  off_reactor=lambda work: deferToThreadPool(reactor, hash_pool, work))
    give_subject_ids(store, ctx)
    # Before the listeners: the first keys are made before anything can
    # ask for a signature.
    KeyKeeper(ctx, store).setServiceParent(root)
    watch(metrics, store, ctx, trail, hasher)
    if config.eventlog:
        share_rate_limits(config, journal, ctx.limiter)
    http = OAuthHTTP(ctx, store, metrics)
    site = http.site()
    site.max_connections = make_room(config.max_connections)
    if site.max_connections < config.max_connections:
        log.warn("the open-file limit admits only {count} HTTP connections, not max_connections "
                 "{wanted}: raise LimitNOFILE (or ulimit -n)",
                 count=site.max_connections, wanted=config.max_connections)
    for endpoint in config.listen:
        strports.service(endpoint, site, reactor=reactor).setServiceParent(root)
    exposed = [endpoint for endpoint in config.listen if not is_loopback_endpoint(endpoint)]
    issuer_host = urlsplit(config.issuer).hostname or ""
    if config.issuer_is_plain_http and (exposed or not is_loopback_host(issuer_host)):
        log.warn(
            "plain-http issuer {issuer} on a non-loopback host or listener ({endpoint}): "
            "tokens will cross the network unencrypted, and the sign-in pages' session "
            "and CSRF cookies go without Secure or the __Host- prefix, so anyone on the "
            "network can read or plant them; put TLS in front and set an https issuer",
            endpoint=" ".join(exposed) or "issuer host",
            issuer=config.issuer,
        )
    if "sessions" not in config.scopes:
        log.warn(
            "the configured scopes lack 'sessions': no app password can open a "
            "PhotoPrism session (POST /api/v1/session) unless its scope is '*'"
        )
    try:
        admin_gid = resolve_group(config.admin_group)
    except KeyError:
        raise ConfigError(f"admin_group: no such group {config.admin_group!r}") from None
    running = Running(ctx, site, trail, hasher)
    root.reloader = Reloader(reread or (lambda: config), running, store)
    control = ControlFactory(
        reactor, store, ctx, allowed_uids=config.admin_uids, admin_gid=admin_gid,
        reload=root.reloader.reload, audit_reader=reader,
    )
    control_service(config.control, control, reactor, admin_gid).setServiceParent(root)
    return root


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the service tree for C{twistd oauthd}.

    @param reactor: the reactor to run on; the global one when C{None}.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        config = options.config()
    except ConfigError as e:
        _exit(str(e))
    # From here on SIGTERM is a clean stop: while the journal replays and
    # the listeners bind (ours), and once the reactor has installed its own
    # handler (the shutdown trigger).
    _stop_cleanly_on_sigterm(reactor)
    reactor.addSystemEventTrigger("after", "shutdown", _forget_sigterm, reactor)
    try:
        service = build_service(config, reactor, reread=options.config)
    except ConfigError as e:
        _exit(str(e))
    from oauthd.reload import reload_on_sighup

    reload_on_sighup(reactor, service.reloader)
    return service


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """
    Make SIGTERM a normal stop with exit status 0. twistd's own handler
    re-raises the signal after shutdown so the process dies "killed by
    SIGTERM"; a service manager asking the daemon to stop is not a failure.
    """

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            # A second SIGTERM while stopping: one stop is enough (a second
            # reactor.stop would fail).
            return
        stopping = True
        log.info("received SIGTERM, stopping")
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)


def _forget_sigterm(reactor: Any) -> None:
    """
    A stop the reactor's own SIGTERM handler began ends with status 0 too:
    twistd re-raises the signal the reactor noted (C{_exitSignal}) once it
    has stopped, unless it is forgotten first.
    """
    if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
        reactor._exitSignal = None
    # The reactor never takes its handler back: a SIGTERM from here to the
    # process's end would be noted (and re-raised) again. It is stopping
    # already; nothing more to do.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
