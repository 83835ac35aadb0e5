"""
The daemon's metrics, exposed to Prometheus at C{GET /api/v1/metrics}
(L{oauthd.web.metrics}).

Recording must cost next to nothing on the hot path, so what happens is
counted in plain dicts and lists, never through prometheus-client's
labelled children (each takes a lock): a counter is one dict update, a
histogram observation one C{bisect} and two additions. Everything is turned
into metric families only when Prometheus scrapes, by L{Metrics.collect};
prometheus-client writes the exposition.

What happened (tokens issued, failed authentications, revocations, rate
limit refusals) is read off the audit events the committer records
(L{Metrics.event}), so the metrics and the audit trail cannot disagree.
What is (live tokens, clients, journal size, queues) is read at scrape time
from readers the daemon registers (L{Metrics.gauge}, L{Metrics.gauges}),
never maintained on the hot path.

Every counter but the HTTP ones is written on the reactor thread; the
journal's fsync histogram only by the journal's writer thread. A scrape
reads them on the reactor thread and may see an observation half made (a
bucket counted, the sum not yet): Prometheus tolerates that.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from twisted.logger import Logger

from oauthd.interfaces import IFollowedLog
from oauthd.services.audit import AuditTrail
from oauthd.services.hashing import PasswordHasher

log = Logger()

AUTH_FAILURES = frozenset({"invalid_client", "invalid_grant", "invalid_token"})
"""
The refusals that are failed authentications: a wrong client secret, a
wrong password, code or refresh token, an unknown bearer token.
"""

REGISTERED = "registered"
"""
The C{client} label of every client that registered itself (RFC 7591):
there can be any number of them, so they share one label value.
"""

MAX_LABELS = 1000
"""
The most values one label of a counter takes; later ones count as C{other}
(a safeguard: every label here comes from a bounded set).
"""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FOLLOW_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Event(Protocol):
    """
    An audit event, as the committer hands it over.
    """

    @property
    def event(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, object]: ...


class Histogram:
    """
    Observations counted into buckets (each bucket holds those above the
    previous bound, up to and including its own; the last, above every
    bound), and their sum.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """
        The cumulative buckets, as Prometheus has them (C{le}, count).
        """
        counts = list(self.counts)
        cumulative = 0
        out = []
        for bound, count in zip([*map(_number, self.bounds), "+Inf"], counts):
            cumulative += count
            out.append((bound, float(cumulative)))
        return out


def _number(bound: float) -> str:
    return repr(float(bound))


class Route(Histogram):
    """
    The requests one HTTP endpoint answered: how many with each status, and
    how long they took (the histogram).
    """

    __slots__ = ("requests",)

    def __init__(self) -> None:
        super().__init__(LATENCY_BUCKETS)
        self.requests: dict[int, int] = {}

    def done(self, status: int, seconds: float) -> None:
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1
        # Histogram.observe, inlined: this runs for every request.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def count(self, status: int) -> None:
        """
        Count an answer that was not timed.
        """
        self.requests[status] = self.requests.get(status, 0) + 1


def _count(table: dict[str, int], key: str) -> None:
    if key in table:
        table[key] += 1
    elif len(table) < MAX_LABELS:
        table[key] = 1
    else:
        table["other"] = table.get("other", 0) + 1


class Metrics:
    """
    The daemon's metrics and their registry (its own, not the process-wide
    default, so tests can build several daemons), with the process's own
    metrics (CPU, memory, open files).

    @ivar registry: what L{oauthd.web.metrics} exposes.
    @ivar clients: the daemon's clients by id, if known: a token's
        C{client} label is then its client's id, or L{REGISTERED} for a
        client that registered itself (or is gone); else always the id.
    @ivar timer: a monotonic clock for durations measured off the reactor
        thread (fsyncs, which the injected reactor cannot time).
    @ivar journal_timed: whether a journal file's fsyncs are timed
        (L{timed_fsync}); only then are its fsync and group commit
        histograms exposed (an event log in PostgreSQL has neither).
    @ivar log_followed: whether the event log is a shared one this node
        follows; only then is its follow latency histogram exposed.
    """

    journal_timed = False
    log_followed = False

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        self.clients: Mapping[str, Any] | None = None
        self.issued: dict[str, dict[str, int]] = {}
        # Known from the start, so that their series exist before the first.
        self.auth_failures = dict.fromkeys(sorted(AUTH_FAILURES), 0)
        self.revocations = dict.fromkeys(("admin", "request", "reuse"), 0)
        self.rate_limited: dict[str, int] = {}
        self.routes: dict[str, Route] = {}
        self.fsync = Histogram(FSYNC_BUCKETS)
        self.batches = Histogram(BATCH_BUCKETS)
        self.hash_wait = Histogram(WAIT_BUCKETS)
        self.follow = Histogram(FOLLOW_BUCKETS)
        self._counted: list[tuple[str, str, Callable[[], float]]] = []
        self._gauges: list[tuple[str, str, str, Callable[[], float]]] = []
        self._labelled: list[tuple[str, str, str, Sequence[str],
                                   Callable[[], Iterable[tuple[Sequence[str], float]]]]] = []
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    # -- recording ----------------------------------------------------------

    def event(self, event: Event) -> None:
        """
        Count what an audit event tells: a token issued, a failed
        authentication, a rate limit refusal, a revocation.
        """
        name = event.event
        if name == "token.issue":
            fields = event.fields
            grant = fields.get("grant")
            if not isinstance(grant, str) or not grant:
                grant = "admin" if fields.get("via") == "control" else "app_password"
            client = fields.get("client")
            label = ""
            if isinstance(client, str) and client:
                # A token is counted once durable; by then its client may be
                # gone (a registration deleted meanwhile, which anyone may
                # make): its id must not become a label value.
                clients = self.clients
                known = clients.get(client) if clients is not None else None
                registered = clients is not None and (known is None or known.registration_digest)
                label = REGISTERED if registered else client
            by_client = self.issued.get(grant)
            if by_client is not None and label in by_client:
                by_client[label] += 1
            else:
                _count(self.issued.setdefault(grant, {}), label)
        elif name.endswith(".refuse"):
            self._refused(event.fields)
        elif name == "token.revoke":
            self._revoked(event.outcome, event.fields)
        elif name == "session.create" and event.outcome == "ok":
            _count(self.issued.setdefault("session", {}), "")
        elif name == "control.connect" and event.outcome == "denied":
            _count(self.auth_failures, "control_peer")

    def _refused(self, fields: Mapping[str, object]) -> None:
        error = fields.get("error")
        if error == "too_many_requests":
            for limit in str(fields.get("limit") or "other").split(","):
                _count(self.rate_limited, limit)
            return
        if error in AUTH_FAILURES:
            assert isinstance(error, str)
            _count(self.auth_failures, error)

    def _revoked(self, outcome: str, fields: Mapping[str, object]) -> None:
        if outcome != "ok" or not ("token" in fields or "grant" in fields):
            # Nothing was revoked (an unknown token is answered 200 all
            # the same).
            return
        if "reuse" in str(fields.get("reason", "")):
            via = "reuse"
        elif "peer_uid" in fields:
            via = "admin"
        else:
            via = "request"
        _count(self.revocations, via)

    def route(self, endpoint: str) -> Route:
        """
        The tally of one HTTP endpoint (its route template), made once.
        """
        route = self.routes.get(endpoint)
        if route is None:
            route = self.routes[endpoint] = Route()
        return route

    def timed_fsync(self, fsync: Callable[[int], None]) -> Callable[[int], None]:
        """
        C{fsync}, timed into the fsync histogram (it runs on the journal's
        writer thread).
        """
        self.journal_timed = True
        timer, observe = self.timer, self.fsync.observe

        def timed(fd: int) -> None:
            started = timer()
            try:
                fsync(fd)
            finally:
                observe(timer() - started)

        return timed

    def batch(self, records: int) -> None:
        """
        Note one group commit of C{records} records.
        """
        self.batches.observe(records)

    def hash_waited(self, seconds: float) -> None:
        """
        Note how long a password check waited for a thread of the pool.
        """
        self.hash_wait.observe(seconds)

    # -- reading at scrape time ---------------------------------------------

    def gauge(self, name: str, documentation: str, read: Callable[[], float], unit: str = "") -> None:
        """
        Expose what C{read} returns at each scrape as the gauge C{name}.
        """
        self._gauges.append((name, documentation, unit, read))

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """
        Expose what C{read} returns at each scrape as the counter C{name}
        (kept by the part that counts, read only here).
        """
        self._counted.append((name, documentation, read))

    def gauges(
        self, name: str, documentation: str, labels: Sequence[str],
        read: Callable[[], Iterable[tuple[Sequence[str], float]]], unit: str = "",
    ) -> None:
        """
        Expose the labelled values C{read} returns at each scrape as the
        gauge C{name}.
        """
        self._labelled.append((name, documentation, unit, labels, read))

    def collect(self) -> Iterator[Metric]:
        """
        Every metric now (prometheus-client's collector interface).
        """
        yield from self._counters()
        yield from self._http()
        yield from self._histograms()
        yield from self._read()

    def _counters(self) -> Iterator[Metric]:
        issued = CounterMetricFamily(
            "oauthd_tokens_issued", "Tokens issued, by grant type and client (registered clients"
            " share one label value).", labels=["grant", "client"])
        for grant, by_client in sorted(self.issued.items()):
            for client, count in sorted(by_client.items()):
                issued.add_metric([grant, client], count)
        yield issued
        for name, documentation, read in self._counted:
            yield CounterMetricFamily(name, documentation, value=read())
        for name, documentation, label, table in (
            ("oauthd_authentication_failures", "Failed authentications, by reason (the OAuth"
             " error code; control_peer: a refused control socket connection).", "reason",
             self.auth_failures),
            ("oauthd_token_revocations", "Tokens or grants revoked, by how (request: RFC 7009 or"
             " a bearer; reuse: a reused refresh token or code; admin: oauthctl).", "via",
             self.revocations),
            ("oauthd_rate_limited", "Requests refused 429 by a failure rate limit, by limit.",
             "limit", self.rate_limited),
        ):
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in sorted(table.items()):
                family.add_metric([value], count)
            yield family

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "oauthd_http_requests", "HTTP requests answered, by endpoint (route template) and"
            " status.", labels=["endpoint", "status"])
        latency = HistogramMetricFamily(
            "oauthd_http_request_duration_seconds", "Time from a request's arrival to its"
            " answer, by endpoint.", labels=["endpoint"], unit="seconds")
        for endpoint, route in sorted(self.routes.items()):
            if not route.requests:
                continue
            for status, count in sorted(route.requests.items()):
                requests.add_metric([endpoint, str(status)], count)
            latency.add_metric([endpoint], route.buckets(), route.total)
        yield requests
        yield latency

    def _histograms(self) -> Iterator[Metric]:
        journal = (
            ("oauthd_journal_fsync_duration_seconds", "Time each fsync of the journal took.",
             "seconds", self.fsync),
            ("oauthd_journal_group_commit_records", "Records written by each group commit"
             " (one write and fsync).", "", self.batches),
        ) if self.journal_timed else ()
        follow = (
            ("oauthd_eventlog_follow_seconds", "Time from a wake-up of the shared log's follower"
             " (PostgreSQL's notification of an append, or its poll) to the delivery here of the"
             " records it announced.", "seconds", self.follow),
        ) if self.log_followed else ()
        for name, documentation, unit, histogram in (
            *journal,
            *follow,
            ("oauthd_hash_wait_seconds", "Time password checks and hashes waited for a thread"
             " of the hashing pool.", "seconds", self.hash_wait),
        ):
            family = HistogramMetricFamily(name, documentation, unit=unit)
            family.add_metric([], histogram.buckets(), histogram.total)
            yield family

    def _read(self) -> Iterator[Metric]:
        for name, documentation, unit, read in self._gauges:
            try:
                value = float(read())
            except Exception:
                log.failure("reading the metric {name} failed", name=name)
                continue
            yield GaugeMetricFamily(name, documentation, value, unit=unit)
        for name, documentation, unit, labels, read_all in self._labelled:
            family = GaugeMetricFamily(name, documentation, labels=labels, unit=unit)
            try:
                for values, value in read_all():
                    family.add_metric(values, float(value))
            except Exception:
                log.failure("reading the metric {name} failed", name=name)
                continue
            yield family


def watch(
    metrics: Metrics, store: Any, ctx: Any, trail: AuditTrail | None = None,
    hasher: PasswordHasher | None = None,
) -> None:
    """
    Feed the daemon's metrics: the audit events the store records, and the
    readings taken at each scrape (the state's counts, the journal's size,
    the audit trail's backlog, the hashing pool's queue, the keys' ages).
    The daemon's parts are taken as they come (services may not import the
    state layer): what is read of each is named here.

    @param store: the L{oauthd.state.store.Store}; C{ctx} its context.
    @param trail: the audit trail, if there is one.
    @param hasher: the password hashing pool, if there is one.
    """
    state = store.state

    def live_fraction() -> float:
        fraction: float = state.live_records / max(1, store.log.record_count)
        return min(1.0, fraction)

    def key_ages() -> Any:
        now = ctx.now()
        for key in state.keys.published(now):
            yield (key.kid, key.alg, state.keys.state(key, now)), now - key.created

    metrics.clients = state.clients
    store.observe = metrics.event
    for name, documentation, read, unit in (
        ("oauthd_tokens", "Live tokens (expired ones until swept, at most a minute).",
         state.token_count, ""),
        ("oauthd_clients", "Clients.", lambda: len(state.clients), ""),
        ("oauthd_users", "Users.", lambda: len(state.users), ""),
        ("oauthd_browser_sessions", "Browser sessions at the authorization endpoint"
         " (expired ones until pruned).", lambda: len(state.authz.browsers), ""),
        ("oauthd_journal_bytes", "Size of the journal.", lambda: store.log.byte_count, "bytes"),
        ("oauthd_journal_records", "Records in the journal.", lambda: store.log.record_count, ""),
        ("oauthd_journal_live_ratio", "Records a compaction would keep, over those in the"
         " journal.", live_fraction, ""),
        ("oauthd_journal_last_compaction_timestamp_seconds", "When the last compaction"
         " finished (0: none since the start).", lambda: store.compacted_at or 0, "seconds"),
        ("oauthd_journal_last_compaction_duration_seconds", "How long the last compaction"
         " took.", lambda: store.compaction_seconds, "seconds"),
    ):
        metrics.gauge(name, documentation, read, unit)
    metrics.gauges("oauthd_signing_key_age_seconds", "Age of each published signing key, by"
                   " state (next, signing, retired).", ["kid", "alg", "state"], key_ages, "seconds")
    if IFollowedLog.providedBy(store.log):
        _watch_shared_log(metrics, store)
    if trail is not None:
        metrics.gauge("oauthd_audit_backlog_events", "Audit events waiting to be written.",
                      lambda: trail.backlog)
    if hasher is not None:
        hasher.on_wait = metrics.hash_waited
        metrics.gauge("oauthd_hash_queue_jobs", "Password checks and hashes waiting for a thread.",
                      lambda: hasher.queued)


def _watch_shared_log(metrics: Metrics, store: Any) -> None:
    """
    The readings of a shared event log: the node's lag, the follow latency,
    and the appends the log refused for a claim.
    """
    log = store.log
    metrics.log_followed = True
    log.on_follow = metrics.follow.observe

    def lag() -> float:
        seconds = log.lag()
        return float("nan") if seconds is None else float(seconds)

    metrics.gauge("oauthd_eventlog_lag_seconds", "Seconds since this node last read the shared"
                  " event log up to its head (NaN while it does not follow it yet).", lag, "seconds")
    follower = store.follower
    if follower is not None:
        metrics.counter("oauthd_eventlog_claim_conflicts", "Changes of this node's the shared"
                        " log refused because another node used the same code, refresh token, name"
                        " or id first.", lambda: follower.conflicts)
