# -*- test-case-name: tests.test_reload -*-
"""
Reloading the configuration while the daemon runs: on SIGHUP, and for
C{oauthctl reload}.

A reload reopens twistd's log file, reads the configuration again (the file,
overridden by the command line, as at start), and puts what can change
safely into the running daemon: the rate limits, lifetimes, scopes,
registration policy, logging, audit retention and request limits. The keys
in L{RESTART_KEYS} keep their running value and are reported as waiting for
a restart. A configuration that does not load changes nothing. Each changed
key is logged with its old and new value (a configuration holds no secret),
and the reload is audited (C{config.reload}).

L{Running.apply} is the one place a new configuration goes into the
objects that hold it: the protocol layer's context (every decision reads
the configuration there when it is made) and its rate limiter, the HTTP
site, the audit trail and the password hasher. Requests in flight finish
as they began; listeners are not touched.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from oauthd.config import SETTINGS, Config, ConfigError, Reloaded
from oauthd.protocol.context import Context
from oauthd.services.audit import AuditTrail
from oauthd.services.hashing import PasswordHasher
from oauthd.services.logfiles import reopen_log_files
from oauthd.services.notify import reloading, sd_notify
from oauthd.state.decision import audit
from oauthd.state.store import Store
from oauthd.web.site import OAuthSite

log = Logger()

RESTART_KEYS = frozenset({
    "listen", "control", "data", "issuer", "hash_threads", "admin_uids", "admin_group",
    "max_connections", "eventlog", "node_id", "eventlog_secret_key_file",
})
"""
What a reload cannot change: the listeners and the control socket (bound
once), the data directory (locked, its journal open), the issuer (in every
token, cookie name and discovery document), the hashing pool's size, who
may use the control socket, and the HTTP connection cap (the open-file
limit was raised for it at start).
"""


def shown(value: object) -> str:
    """
    A configuration value as the file has it.
    """
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def reconcile(running: Config, wanted: Config) -> tuple[Config, Reloaded]:
    """
    The configuration to run with after a reload to C{wanted}: its values,
    but the running ones of L{RESTART_KEYS}; and what changed.
    """
    changed = []
    restart = []
    for key in SETTINGS:
        old, new = getattr(running, key), getattr(wanted, key)
        if old == new:
            continue
        if key in RESTART_KEYS:
            restart.append(key)
        else:
            changed.append((key, shown(old), shown(new)))
    live = {key: getattr(wanted, key) for key, _, _ in changed}
    return attrs.evolve(running, **live), Reloaded(tuple(changed), tuple(restart))


@attrs.define
class Running:
    """
    The objects that hold the running configuration's values.
    """

    ctx: Context
    site: OAuthSite | None = None
    trail: AuditTrail | None = None
    hasher: PasswordHasher | None = None

    def apply(self, config: Config) -> None:
        """
        Run with C{config} from now on.
        """
        self.ctx.reconfigure(config)
        site = self.site
        if site is not None:
            site.access_log = config.access_log
            site.max_body = config.max_body
            site.header_timeout = config.header_timeout
            site.body_timeout = config.body_timeout
            # New connections' idle timeout (twisted.web copies it to each).
            site.timeOut = config.idle_timeout
        if self.trail is not None:
            self.trail.limits = attrs.evolve(
                self.trail.limits, rotate_bytes=config.audit_rotate_bytes,
                keep_bytes=config.audit_keep_bytes, keep_days=config.audit_keep_days,
                backlog=config.audit_backlog,
            )
        if self.hasher is not None:
            self.hasher.cost = config.bcrypt_cost


class Reloader:
    """
    Reloads the configuration into L{Running}, telling systemd
    (C{RELOADING=1}, then C{READY=1}), logging and auditing it.

    @ivar read: reads the configuration afresh.
    """

    def __init__(
        self, read: Callable[[], Config], running: Running, store: Store,
        notify: Callable[[str], object] = sd_notify,
        reopen: Callable[[], list[str]] = reopen_log_files,
    ) -> None:
        self.read = read
        self.running = running
        self._store = store
        self._notify = notify
        self._reopen = reopen

    def reload(self, **who: object) -> Reloaded:
        """
        Reload, on the reactor thread (the file is small).

        @param who: who asked, for the audit event.
        @raise ConfigError: if the configuration does not load; the running
            one is kept.
        """
        self._notify(reloading())
        try:
            try:
                self._reopen()
            except OSError as e:
                log.error("cannot reopen the log file: {error}", error=str(e))
            return self._reload(who)
        finally:
            self._notify("READY=1")

    def _reload(self, who: dict[str, object]) -> Reloaded:
        try:
            wanted = self.read()
        except ConfigError as e:
            log.error("configuration not reloaded, the running one is kept: {error}", error=str(e))
            self._store.record_audit(audit("config.reload", "failed", reason=str(e), **who))
            raise
        config, outcome = reconcile(self.running.ctx.config, wanted)
        self.running.apply(config)
        for key, old, new in outcome.changed:
            log.info("configuration reloaded: {key} changed from {old} to {new}", key=key, old=old, new=new)
        for key in outcome.restart:
            log.warn("configuration reloaded: {key} changed but needs a restart; running with {old}",
                     key=key, old=shown(getattr(config, key)))
        if not outcome.changed and not outcome.restart:
            log.info("configuration reloaded: nothing changed")
        self._store.record_audit(audit(
            "config.reload", "ok", count=len(outcome.changed),
            changed=",".join(key for key, _, _ in outcome.changed) or "none",
            restart=",".join(outcome.restart) or "none", **who,
        ))
        return outcome

    def on_signal(self) -> None:
        """
        Reload for SIGHUP: a configuration that does not load is logged.
        """
        log.info("received SIGHUP, reloading the configuration")
        try:
            self.reload(via="signal")
        except ConfigError:
            pass


def reload_on_sighup(reactor: Any, reloader: Reloader) -> None:
    """
    Make SIGHUP reload the configuration, on the reactor thread.
    """

    def hup(signum: int, frame: object) -> None:
        reactor.callFromThread(reloader.on_signal)

    signal.signal(signal.SIGHUP, hup)
