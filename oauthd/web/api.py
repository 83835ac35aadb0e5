"""
oauthd's HTTP API: Klein routes that read a request (L{oauthd.web.parsing}),
ask the protocol layer for a decision, have the store commit it, and render
the answer, or the refusal, as JSON in the RFC 6749 section 5.2 shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from oauthd.interfaces import AuditFailing, IFollowedLog
from oauthd.protocol import (
    clientauth, device, errors, grants, id_tokens, introspection, misses, registration, revocation,
    sessions, signing, userinfo,
)
from oauthd.protocol.context import Body, Context
from oauthd.protocol.discovery import (
    Capabilities,
    authorization_server_metadata,
    openid_configuration,
)
from oauthd.protocol.errors import OAuthError, deny
from oauthd.state.decision import Decision, audit
from oauthd.state.follower import MissGate, caught_up
from oauthd.state.store import NotDurable, Store, succeeded
from oauthd.web import parsing
from oauthd.web.metrics import Exposition, Recorder, RequestMetrics
from oauthd.web.pages import static
from oauthd.web.pages.device import DevicePages
from oauthd.web.pages.flow import AuthorizePages
from oauthd.web.pages.logout import LogoutPages
from oauthd.web.refusals import is_session_path, refusal
from oauthd.web.routing import Router
from oauthd.web.site import Edge, OAuthSite, json_body
from oauthd.web.staleness import check_fresh, log_health

log = Logger()

T = TypeVar("T")

_EVENTS = {
    b"/api/v1/oauth/token": "token",
    b"/api/v1/oauth/revoke": "revoke",
    b"/api/v1/oauth/introspect": "introspect",
    b"/api/v1/oauth/userinfo": "userinfo",
    b"/api/v1/oauth/authorize": "authorize",
    b"/api/v1/oauth/logout": "logout",
    b"/api/v1/oauth/register": "register",
    b"/api/v1/oauth/device": "device",
    b"/api/v1/oauth/device/verify": "device",
    b"/api/v1/metrics": "metrics",
}


class OAuthHTTP:
    """
    oauthd's HTTP API.

    @ivar capabilities: what is served, for the discovery documents.
    """

    app = Klein()

    def __init__(self, ctx: Context, store: Store, metrics: Recorder | None = None) -> None:
        self._ctx = ctx
        self._store = store
        self._metrics = metrics
        self._exposition = Exposition(ctx, metrics.registry) if metrics is not None else None
        self.limiter = ctx.limiter
        self._miss_budget = MissGate(ctx.clock)
        # A local journal is never stale (check_fresh): asked once, not per read.
        self._shared = IFollowedLog.providedBy(store.log)
        self.capabilities = Capabilities(
            endpoints=frozenset({
                "token_endpoint", "revocation_endpoint", "introspection_endpoint",
                "userinfo_endpoint", "authorization_endpoint", "end_session_endpoint", "jwks_uri",
                "registration_endpoint",
                "device_authorization_endpoint",
            }),
            grant_types=grants.SERVED,
            client_auth_methods=clientauth.METHODS,
            claims=userinfo.CLAIMS | id_tokens.CLAIMS,
            id_token_algs=frozenset(signing.ALGORITHMS),
        )

        self._pages = AuthorizePages(ctx, store, self._ip, self._audit_refusal)
        self._logout = LogoutPages(ctx, store, self._audit_refusal)
        self._device = DevicePages(ctx, store, self._ip, self._audit_refusal)

    def resource(self) -> IResource:
        return Edge(Router(self.app))

    def site(self) -> OAuthSite:
        """
        The L{Site} to listen with.
        """
        config = self._ctx.config
        site = OAuthSite(
            self.resource(), config.max_body, config.access_log, reactor=self._ctx.clock,
            header_timeout=config.header_timeout, body_timeout=config.body_timeout,
            idle_timeout=config.idle_timeout, max_connections=config.max_connections,
        )
        if self._metrics is not None:
            rules = {rule.rule for rule in self.app.url_map.iter_rules()}
            requests = RequestMetrics(sorted(rules), self._metrics, self._ctx.clock)
            site.metrics, site.outside = requests, requests.outside
        return site

    # -- parsing ------------------------------------------------------------

    def _ip(self, request: IRequest) -> str:
        return parsing.client_ip(request, self._ctx.config.trusted_proxies)

    def _params(self, request: IRequest) -> dict[str, str]:
        return parsing.params(request, self._ctx.config.max_body)

    def _fresh(self) -> None:
        if self._shared:
            check_fresh(self._store.log, self._ctx.config.eventlog_max_lag)

    def _committed(self, decided: Decision[Body] | Deferred[Decision[Body]]) -> Deferred[Body]:
        """
        The answer to a decision, once the store has made it durable; a
        change the event log cannot take is refused C{temporarily_unavailable},
        audited with who and what it was for.
        """
        if isinstance(decided, Deferred):
            committed = decided.addCallback(self._store.commit)
        else:
            committed = self._store.commit(decided)
        if succeeded(committed):
            return committed
        return committed.addErrback(_not_durable)

    def _respond(self, request: IRequest, work: Deferred[Body], status: int = 200) -> bytes | Deferred[bytes]:
        """
        The response to C{request}: at once if C{work} is done already (there
        is then no hang-up to shield it from), else as L{_answered} gives it.
        """
        if succeeded(work):
            return json_body(request, work.result, status)
        return self._answered(request, work, status)

    def _answered(self, request: IRequest, work: Deferred[Body], status: int = 200) -> Deferred[bytes]:
        """
        The response to C{request}, rendered once C{work} is done.

        Klein cancels a response whose client hung up. C{work} is shielded
        from that: a change already in memory still becomes durable and is
        audited, and a refusal is audited, as if the client had waited.
        """
        answer: Deferred[bytes] = Deferred()
        work.addBoth(self._settle, request, answer, status)
        return answer

    def _settle(self, result: Body | Failure, request: IRequest, answer: Deferred[bytes], status: int) -> None:
        """
        Render C{result}, what C{request}'s work came to, through C{answer}
        (see L{_answered}); once the client has hung up, audit a refusal.
        """
        if not answer.called:
            if isinstance(result, Failure):
                answer.errback(result)
                return
            try:
                rendered = json_body(request, result, status)
            except Exception:
                answer.errback()
            else:
                answer.callback(rendered)
        elif isinstance(result, Failure):
            if isinstance(result.value, OAuthError):
                # Caught here rather than by an errback after settle:
                # one step fewer on every answer given later.
                try:
                    self._audit_refusal(request, result.value)
                except Exception:
                    log.failure("auditing a refusal after a hang-up failed")
            else:
                log.failure("unhandled error after the client of {method} {path} hung up",
                            result, method=request.method, path=request.path)

    def _audit_refusal(self, request: IRequest, error: OAuthError) -> None:
        """
        Audit a refusal, with the context the protocol layer attached.
        """
        path = request.path or b""
        if path.startswith(b"/api/v1/oauth/register/"):
            path = b"/api/v1/oauth/register"
        event = _EVENTS.get(path, "session" if is_session_path(request) else "http")
        context = {"ip": self._ip(request), "reason": error.description}
        context.update((k, str(v)) for k, v in error.context.items() if k not in ("event", "outcome"))
        self._store.record_audit(
            audit(f"{event}.refuse", "denied", error=error.error, status=error.status, **context))

    def _after_a_miss(
        self, missed: Callable[[], bool], caller: str, answer: Callable[[], T | Deferred[T]],
    ) -> T | Deferred[T]:
        """
        C{answer()}, or, over a shared log where C{missed()} (what the
        request names is not held here: another node may have just made it),
        C{answer()} once this node caught up, within C{caller}'s budget.
        """
        if self._waits_for_the_log(missed, caller):
            return caught_up(self._store).addCallback(lambda _: answer())
        return answer()

    def _waits_for_the_log(self, missed: Callable[[], bool], caller: str) -> bool:
        """
        Whether a request waits for this node to catch up before it is
        answered (L{_after_a_miss}).
        """
        return self._store.follower is not None and missed() and self._miss_budget.admit(caller)

    # -- endpoints ------------------------------------------------------------

    @app.route("/api/v1/oauth/token", methods=["POST"])
    def token(self, request: IRequest) -> bytes | Deferred[bytes]:
        params = self._params(request)
        auth, presented = parsing.client_auth(request, params)
        ip = self._ip(request)
        decided = self._after_a_miss(lambda: misses.token_request(self._ctx, params, auth), _caller(auth, ip),
                                     lambda: grants.token(self._ctx, params, auth, ip, presented))
        return self._respond(request, self._committed(decided))

    @app.route("/api/v1/oauth/device", methods=["POST"])
    @app.route("/api/v1/oauth/device/verify", methods=["GET", "POST"])
    def device_authorization(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        The device authorization endpoint (RFC 8628), and the page where a
        user approves a device (L{DevicePages}).
        """
        if request.path == b"/api/v1/oauth/device/verify":
            return self._device.post(request) if request.method == b"POST" else self._device.get(request)
        params = self._params(request)
        auth, _ = parsing.client_auth(request, params)
        decided = device.start(self._ctx, params, auth, self._ip(request))
        return self._respond(request, self._committed(decided))

    @app.route("/api/v1/oauth/revoke", methods=["POST"])
    def revoke(self, request: IRequest) -> bytes | Deferred[bytes]:
        params = self._params(request)
        auth, presented = parsing.client_auth(request, params)
        ip = self._ip(request)
        # A 200 for a token another node issued just now, unknown here, would leave it live everywhere.
        decided = self._after_a_miss(lambda: misses.token(self._ctx, params.get("token", "")), _caller(auth, ip),
                                     lambda: revocation.revoke(self._ctx, params, auth, presented, ip))
        return self._respond(request, self._committed(decided))

    @app.route("/api/v1/oauth/introspect", methods=["POST"])
    def introspect(self, request: IRequest) -> bytes | Deferred[bytes]:
        self._fresh()
        params = self._params(request)
        auth, presented = parsing.client_auth(request, params)
        ip = self._ip(request)
        answer = introspection.introspect(self._ctx, params, auth, presented, ip)
        if answer == {"active": False} and self._waits_for_the_log(
                lambda: misses.token(self._ctx, params.get("token", "")), _caller(auth, ip)):
            # Asked again once this node caught up; otherwise answered as decided.
            return caught_up(self._store).addCallback(lambda _: json_body(
                request, introspection.introspect(self._ctx, params, auth, presented, ip)))
        return json_body(request, answer)

    @app.route("/api/v1/oauth/userinfo", methods=["GET", "POST"])
    def userinfo(self, request: IRequest) -> bytes | Deferred[bytes]:
        self._fresh()
        presented = parsing.bearer_of(request)
        if request.method == b"POST":
            in_body = self._params(request).get("access_token")
            if in_body is not None:
                if presented is not None:
                    raise errors.invalid_request("present the access token one way only")
                presented = in_body
        ip = self._ip(request)
        return self._after_a_miss(lambda: presented is not None and misses.token(self._ctx, presented), ip,
                                  lambda: json_body(request, userinfo.userinfo(self._ctx, presented, ip)))

    @app.route("/api/v1/session", methods=["POST"])
    @app.route("/api/v1/sessions", methods=["POST"])
    def create_session(self, request: IRequest) -> bytes | Deferred[bytes]:
        params = parsing.params(request, self._ctx.config.max_body, untyped_json=True)
        decided = Deferred.fromCoroutine(sessions.create_session(self._ctx, params, self._ip(request)))
        return self._respond(request, self._committed(decided))

    @app.route("/api/v1/session", methods=["DELETE"])
    @app.route("/api/v1/session/<string:reference>", methods=["DELETE"])
    @app.route("/api/v1/sessions/<string:reference>", methods=["DELETE"])
    def delete_session(self, request: IRequest, reference: str | None = None) -> bytes | Deferred[bytes]:
        presented, ip = parsing.bearer_of(request), self._ip(request)
        decided = self._after_a_miss(lambda: presented is not None and misses.token(self._ctx, presented), ip,
                                     lambda: sessions.delete_session(self._ctx, presented, ip, reference))
        return self._respond(request, self._committed(decided))

    @app.route("/api/v1/oauth/register", methods=["POST"])
    @app.route("/api/v1/oauth/register/<string:client_id>", methods=["GET", "PUT", "DELETE"])
    def register(self, request: IRequest, client_id: str | None = None) -> bytes | Deferred[bytes]:
        """
        Dynamic client registration (RFC 7591), and a registration's
        management URI (RFC 7592).
        """
        return self._after_a_miss(lambda: client_id is not None and misses.client(self._ctx, client_id),
                                  self._ip(request), lambda: self._registration(request, client_id))

    def _registration(self, request: IRequest, client_id: str | None) -> bytes | Deferred[bytes]:
        presented, ip = parsing.bearer_of(request), self._ip(request)
        if client_id is None:
            body = parsing.json_object(request, self._ctx.config.max_body)
            decided = registration.register(self._ctx, body, presented, ip)
            return self._respond(request, self._committed(decided), 201)
        if request.method == b"GET":
            found = registration.registered_client(self._ctx, client_id, presented, ip)
            assert presented is not None  # registered_client refused a request without one
            return json_body(request, registration.described(self._ctx, found, presented))
        if request.method == b"PUT":
            body = parsing.json_object(request, self._ctx.config.max_body)
            decided = registration.update(self._ctx, client_id, body, presented, ip)
            return self._respond(request, self._committed(decided))
        deleted = self._committed(registration.delete(self._ctx, client_id, presented, ip))
        return self._answered(request, deleted, 204).addCallback(lambda _: _no_content(request))

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: IRequest) -> bytes:
        """
        C{ok}, or 503 with why changes cannot be made (the journal failed,
        the audit trail cannot write) and what to do, or why the state is
        too stale to serve; on a shared log, its lag and reachability.
        """
        logged, stale = log_health(self._store.log, self._ctx.config.eventlog_max_lag)
        trouble = "; ".join(r for r in (self._store.trouble(), stale) if r is not None)
        if trouble:
            return json_body(request, {"status": "failing", "reason": trouble, **logged}, 503)
        return json_body(request, {"status": "ok", **logged})

    @app.route("/api/v1/metrics", methods=["GET"])
    def _metrics_page(self, request: IRequest) -> bytes:
        """
        Prometheus's scrape (L{Exposition}), if the daemon keeps metrics.
        """
        if self._exposition is None:
            raise NotFound()
        return self._exposition.render(request, self._ip(request))

    @app.route("/.well-known/oauth-authorization-server", methods=["GET"])
    @app.route("/.well-known/openid-configuration", methods=["GET"])
    def metadata(self, request: IRequest) -> bytes:
        """
        RFC 8414's document, or OpenID Connect Discovery's: one route each.
        """
        openid = (request.path or b"").endswith(b"/openid-configuration")
        document = openid_configuration if openid else authorization_server_metadata
        return _public(request, document(self._ctx.config, self.capabilities))

    @app.route("/.well-known/jwks.json", methods=["GET"])
    def jwks(self, request: IRequest) -> bytes:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        max_age = signing.jwks_max_age(self._ctx.config)
        cache = f"public, max-age={max_age}" if max_age else "no-cache"
        return json_body(request, signing.jwks(self._ctx), headers={"Cache-Control": cache},
                         no_store=False)

    @app.route("/api/v1/oauth/authorize", methods=["GET", "POST"])
    def authorize(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        The authorization endpoint's pages (L{AuthorizePages}).
        """
        if request.method == b"POST":
            return self._pages.post(request)
        return self._pages.get(request)

    @app.route("/api/v1/oauth/logout", methods=["GET", "POST"])
    def end_session(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        RP-initiated logout's pages (L{LogoutPages}).
        """
        if request.method == b"POST":
            return self._logout.post(request)
        return self._logout.get(request)

    @app.route("/api/v1/oauth/static/<string:name>", methods=["GET"])
    def static_file(self, request: IRequest, name: str) -> bytes:
        served = static.serve(request, name)
        if served is None:
            raise NotFound()
        return served

    @app.handle_errors(OAuthError)
    def oauth_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Render a refusal, and audit it: every refusal is audited once, here
        (or by L{_answered} if the client hung up first).
        """
        error = failure.value
        assert isinstance(error, OAuthError)
        self._audit_refusal(request, error)
        return refusal(request, error)

    @app.handle_errors(NotFound)
    # werkzeug redirects a path with doubled slashes to the route it
    # resembles: oauthd serves no such path.
    @app.handle_errors(RequestRedirect)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        return refusal(request, OAuthError("not_found", "no such resource", 404))

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, MethodNotAllowed)
        allowed = ", ".join(sorted(error.valid_methods or []))
        return refusal(request, OAuthError("method_not_allowed", f"use {allowed}", 405, {"Allow": allowed}))

    @app.handle_errors(Exception)
    def server_error(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("unhandled error answering {method} {path}", failure,
                    method=request.method, path=request.path)
        return json_body(
            request,
            {"error": "server_error", "error_description": "internal error"},
            500,
        )


def _not_durable(failure: Failure) -> Failure:
    """
    A change the event log cannot take, refused C{temporarily_unavailable}
    and audited with who and what it was for.
    """
    failure.trap(NotDurable)
    error = failure.value
    assert isinstance(error, NotDurable)
    refusal = errors.temporarily_unavailable("the change could not be recorded; try again")
    source = "audit: " if isinstance(error.reason, AuditFailing) else "journal: "
    return Failure(deny(refusal, reason=source + type(error.reason).__name__, **error.context))


def _no_content(request: IRequest) -> bytes:
    request.setHeader(b"Content-Length", b"0")
    return b""


def _public(request: IRequest, document: Body) -> bytes:
    """
    A discovery document: public, cacheable, readable from any origin.
    """
    request.setHeader(b"Access-Control-Allow-Origin", b"*")
    return json_body(request, document, no_store=False)


def _caller(auth: clientauth.ClientAuth, ip: str) -> str:
    """
    Whom a request's lookup misses are budgeted to: its client, else its address.
    """
    return (auth.basic[0] if auth.basic is not None else auth.client_id) or ip
