"""
The HTTP edge: Klein routes that parse requests, call the protocol layer and
render its answers as JSON.

Every response carries C{X-Content-Type-Options: nosniff}; OAuth responses
also carry C{Cache-Control: no-store}. Errors are JSON in the RFC 6749 section
5.2 shape; nothing, however malformed, is answered with an HTML page or a
traceback.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http as web_http
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from oauthd.protocol import clientauth, errors, grants, introspection, revocation, sessions, userinfo
from oauthd.protocol.clientauth import ClientAuth
from oauthd.protocol.context import Body, Context
from oauthd.protocol.discovery import (
    Capabilities,
    authorization_server_metadata,
    openid_configuration,
)
from oauthd.protocol.errors import OAuthError, deny, safe_text
from oauthd.protocol.limits import client_address
from oauthd.state.decision import Decision, audit
from oauthd.state.store import NotDurable, Store

log = Logger()

MAX_HEADER = 4096
"""
The longest credential header read (PhotoPrism's limit); longer ones are
refused without a lookup.
"""

MAX_FIELDS = 64
"""
The most parameters one request body may carry.
"""

MAX_PARAMETER = 4096
"""
The longest parameter value read; longer ones are refused before any work.
"""

_EVENTS = {
    b"/api/v1/oauth/token": "token",
    b"/api/v1/oauth/revoke": "revoke",
    b"/api/v1/oauth/introspect": "introspect",
    b"/api/v1/oauth/userinfo": "userinfo",
}


def json_body(
    request: IRequest,
    body: object,
    status: int = 200,
    headers: dict[str, str] | None = None,
    no_store: bool = True,
) -> bytes:
    """
    Set the status and headers of a JSON response and return its body.

    @param no_store: mark the response uncacheable (RFC 6749 section 5.1), as
        every response carrying or describing a credential must be.
    """
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    if no_store:
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Pragma", b"no-cache")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data


class _CappedBody(io.BytesIO):
    """
    A request body that stops storing once it passes C{limit} bytes, so an
    oversized upload costs no memory; it is then answered 413.

    @ivar overflow: whether the body was (or announced itself as) too large.
    """

    def __init__(self, limit: int, length: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.overflow = length is not None and length > limit

    def write(self, data: Any) -> int:
        if not self.overflow:
            if self.tell() + len(data) <= self.limit:
                return super().write(data)
            self.overflow = True
            self.seek(0)
            self.truncate()
        return len(data)


class _Request(Request):
    """
    A request that lets go of what it holds once it is answered.

    Klein renders each request in closures that refer to themselves, so a
    finished request is freed only by the cyclic garbage collector, and with
    it everything it still holds. Dropped here, its headers, addresses,
    arguments and Klein's adapters are freed by reference counting at once:
    a request then leaves about half as many objects for the collector (22
    instead of 45), which matters most for token requests, held across a
    journal fsync (C{python bench/token_path.py} prints the count).
    """

    _HELD = (
        "requestHeaders", "responseHeaders", "args", "client", "host", "transport",
        "prepath", "postpath", "received_cookies", "cookies", "_adapterCache",
    )

    def finish(self) -> None:
        super().finish()
        for name in self._HELD:
            self.__dict__.pop(name, None)


class OAuthSite(Site):
    """
    The HTTP site: no tracebacks, bodies capped at C{max_body} while they
    arrive, no form parsing by twisted.web (the edge parses bodies itself,
    strictly, and only where a route reads one), and requests that let go of
    what they hold once answered.
    """

    displayTracebacks = False
    requestFactory = _Request

    def __init__(self, resource: IResource, max_body: int, access_log: bool = False) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False)
        self.max_body = max_body
        self.access_log = access_log

    def log(self, request: web_http.Request) -> None:
        if self.access_log:
            super().log(request)

    def getContentFile(self, length: int | None) -> _CappedBody:
        return _CappedBody(self.max_body, length)


def _too_large(limit: int) -> OAuthError:
    return OAuthError("invalid_request", f"the request body is larger than {limit} bytes", 413)


class _Edge(Resource):
    """
    Wraps the Klein resource to add the headers every response must carry,
    including on routing errors, and to refuse URLs Klein cannot decode with
    a JSON error rather than its plain-text one and a logged traceback.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: Request) -> Any:
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        try:
            b"/".join((request.prepath or []) + (request.postpath or [])).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return json_body(
                request,
                {"error": "invalid_request", "error_description": "the URL is not UTF-8"},
                400,
            )
        content = request.content
        if isinstance(content, _CappedBody) and content.overflow:
            error = _too_large(content.limit)
            return json_body(request, error.body(), error.status)
        return self._inner.render(request)


class OAuthHTTP:
    """
    oauthd's HTTP API.

    @ivar capabilities: what is served, for the discovery documents.
    """

    app = Klein()

    def __init__(self, ctx: Context, store: Store) -> None:
        self._ctx = ctx
        self._config = ctx.config
        self._store = store
        self.limiter = ctx.limiter
        self.capabilities = Capabilities(
            endpoints=frozenset({
                "token_endpoint", "revocation_endpoint", "introspection_endpoint",
                "userinfo_endpoint",
            }),
            grant_types=grants.SERVED,
            client_auth_methods=clientauth.METHODS,
            claims=userinfo.CLAIMS,
        )

    def resource(self) -> IResource:
        return _Edge(self.app.resource())

    def site(self) -> Site:
        """
        The L{Site} to listen with.
        """
        return OAuthSite(self.resource(), self._config.max_body, self._config.access_log)

    # -- parsing ------------------------------------------------------------

    def _ip(self, request: IRequest) -> str:
        peer = getattr(request.getClientAddress(), "host", "") or "-"
        trusted = self._config.trusted_proxies
        if not trusted:
            return str(peer)
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
        return client_address(
            str(peer), [v.decode("latin-1") for v in forwarded], trusted,
        )

    def _params(self, request: IRequest) -> dict[str, str]:
        """
        The request body's parameters: C{application/x-www-form-urlencoded}
        (the standard) or a JSON object of strings (PhotoPrism's clients),
        UTF-8 either way. The query string is never read: credentials do
        not belong in URLs.

        @raise OAuthError: C{invalid_request} for anything else: a repeated
            parameter, another content type, bytes that are not UTF-8, a
            value that is not a string or is too long; 413 for a body over
            C{max_body}.
        """
        content = request.content
        body = b""
        if content is not None:
            content.seek(0)
            body = content.read(self._config.max_body + 1)
        if len(body) > self._config.max_body:
            raise _too_large(self._config.max_body)
        types = request.requestHeaders.getRawHeaders(b"content-type") or []
        if len(types) > 1:
            raise errors.invalid_request("the Content-Type header is repeated")
        media, _, rest = (types[0] if types else b"").partition(b";")
        media = media.strip().lower()
        charset = b""
        for parameter in rest.split(b";"):
            name, _, value = parameter.partition(b"=")
            if name.strip().lower() == b"charset":
                charset = value.strip().strip(b'"').lower()
        if charset not in (b"", b"utf-8", b"utf8"):
            raise errors.invalid_request("only UTF-8 bodies are accepted")
        if media == b"application/x-www-form-urlencoded":
            pairs = _form_pairs(body)
        elif media == b"application/json":
            pairs = _json_pairs(body) if body.strip() else []
        elif not body:
            return {}
        elif not media:
            raise errors.invalid_request("a body needs a Content-Type")
        else:
            raise errors.invalid_request(
                "the body must be application/x-www-form-urlencoded or application/json"
            )
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                raise errors.invalid_request(f"the parameter {safe_text(name)} is repeated")
            if len(value) > MAX_PARAMETER:
                raise errors.invalid_request(f"the parameter {safe_text(name)} is too long")
            params[name] = value
        # RFC 6749 section 3.1: a parameter without a value is omitted.
        return {k: v for k, v in params.items() if v}

    def _authorization(
        self, request: IRequest, basic: bool = True,
    ) -> tuple[tuple[str, str] | None, str | None, bool]:
        """
        The C{Authorization} header: Basic credentials (read only if
        C{basic}), a Bearer token, and whether another scheme was used.
        """
        values = request.requestHeaders.getRawHeaders(b"authorization")
        if not values:
            return None, None, False
        if len(values) > 1:
            raise errors.invalid_request("the Authorization header is repeated")
        raw = values[0].strip()
        scheme, _, credentials = raw.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"basic":
            return (_basic(credentials.strip()) if basic else None), None, False
        if scheme == b"bearer":
            return None, credentials.strip()[:MAX_HEADER + 1].decode("latin-1"), False
        return None, None, True

    def _client_auth(self, request: IRequest, params: dict[str, str]) -> tuple[ClientAuth, str | None]:
        """
        The client credentials offered (Basic or body) and the bearer token
        presented, for endpoints that take either. Another C{Authorization}
        scheme is an authentication failure there.
        """
        basic, bearer, other = self._authorization(request)
        if other:
            raise errors.invalid_client("unsupported authentication scheme: use Basic", True)
        auth = ClientAuth(basic, params.get("client_id", ""), params.get("client_secret", ""))
        return auth, self._presented(request, bearer)

    def _presented(self, request: IRequest, bearer: str | None) -> str | None:
        """
        The token presented as a bearer credential, in PhotoPrism's order:
        C{X-Auth-Token}, then C{X-Session-ID}, then C{Authorization: Bearer}.
        """
        for name in (b"x-auth-token", b"x-session-id"):
            values = request.requestHeaders.getRawHeaders(name)
            if values:
                if len(values) > 1:
                    raise errors.invalid_request(f"the {name.decode()} header is repeated")
                value: bytes = values[0].strip()
                if value:
                    return value[:MAX_HEADER + 1].decode("latin-1")
        return bearer

    def _bearer(self, request: IRequest) -> str | None:
        """
        The bearer token of a resource request; another C{Authorization}
        scheme presents none.
        """
        _, bearer, _ = self._authorization(request, basic=False)
        return self._presented(request, bearer)

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

        def not_durable(failure: Failure) -> Failure:
            failure.trap(NotDurable)
            error = failure.value
            assert isinstance(error, NotDurable)
            refusal = errors.temporarily_unavailable("the change could not be recorded; try again")
            return Failure(deny(refusal, reason="journal: " + type(error.reason).__name__,
                                **error.context))

        return committed.addErrback(not_durable)

    def _answered(self, request: IRequest, work: Deferred[Body]) -> Deferred[bytes]:
        """
        The response to C{request}, rendered once C{work} is done.

        Klein cancels a response whose client hung up. C{work} is shielded
        from that: a change already in memory still becomes durable and is
        audited, and a refusal is audited, as if the client had waited.
        """
        answer: Deferred[Body] = Deferred()

        def settle(result: Body | Failure) -> None:
            if not answer.called:
                if isinstance(result, Failure):
                    answer.errback(result)
                else:
                    answer.callback(result)
            elif isinstance(result, Failure):
                if isinstance(result.value, OAuthError):
                    self._audit_refusal(request, result.value)
                else:
                    log.failure("unhandled error after the client of {method} {path} hung up",
                                result, method=request.method, path=request.path)

        work.addBoth(settle).addErrback(
            lambda failure: log.failure("auditing a refusal after a hang-up failed", failure)
        )
        return answer.addCallback(lambda body: json_body(request, body))

    def _audit_refusal(self, request: IRequest, error: OAuthError) -> None:
        """
        Audit a refusal, with the context the protocol layer attached.
        """
        path = request.path or b""
        event = _EVENTS.get(path, "session" if path.startswith(b"/api/v1/session") else "http")
        context = {"ip": self._ip(request), "reason": error.description}
        context.update((k, str(v)) for k, v in error.context.items() if k not in ("event", "outcome"))
        self._store.record_audit(
            audit(f"{event}.refuse", "denied", error=error.error, status=error.status, **context))

    # -- endpoints ------------------------------------------------------------

    @app.route("/api/v1/oauth/token", methods=["POST"])
    def token(self, request: IRequest) -> Deferred[bytes]:
        params = self._params(request)
        auth, _ = self._client_auth(request, params)
        decided = grants.token(self._ctx, params, auth, self._ip(request))
        return self._answered(request, self._committed(decided))

    @app.route("/api/v1/oauth/revoke", methods=["POST"])
    def revoke(self, request: IRequest) -> Deferred[bytes]:
        params = self._params(request)
        auth, presented = self._client_auth(request, params)
        decided = revocation.revoke(self._ctx, params, auth, presented, self._ip(request))
        return self._answered(request, self._committed(decided))

    @app.route("/api/v1/oauth/introspect", methods=["POST"])
    def introspect(self, request: IRequest) -> bytes:
        params = self._params(request)
        auth, presented = self._client_auth(request, params)
        return json_body(request, introspection.introspect(self._ctx, params, auth, presented, self._ip(request)))

    @app.route("/api/v1/oauth/userinfo", methods=["GET", "POST"])
    def userinfo(self, request: IRequest) -> bytes:
        presented = self._bearer(request)
        if request.method == b"POST":
            in_body = self._params(request).get("access_token")
            if in_body is not None:
                if presented is not None:
                    raise errors.invalid_request("present the access token one way only")
                presented = in_body
        return json_body(request, userinfo.userinfo(self._ctx, presented, self._ip(request)))

    @app.route("/api/v1/session", methods=["POST"])
    @app.route("/api/v1/sessions", methods=["POST"])
    def create_session(self, request: IRequest) -> Deferred[bytes]:
        params = self._params(request)
        decided = Deferred.fromCoroutine(sessions.create_session(self._ctx, params, self._ip(request)))
        return self._answered(request, self._committed(decided))

    @app.route("/api/v1/session", methods=["DELETE"])
    @app.route("/api/v1/session/<string:reference>", methods=["DELETE"])
    @app.route("/api/v1/sessions/<string:reference>", methods=["DELETE"])
    def delete_session(self, request: IRequest, reference: str | None = None) -> Deferred[bytes]:
        decided = sessions.delete_session(self._ctx, self._bearer(request), self._ip(request), reference)
        return self._answered(request, self._committed(decided))

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: IRequest) -> bytes:
        return json_body(request, {"status": "ok"})

    @app.route("/.well-known/oauth-authorization-server", methods=["GET"])
    def oauth_metadata(self, request: IRequest) -> bytes:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        return json_body(
            request,
            authorization_server_metadata(self._config, self.capabilities),
            no_store=False,
        )

    @app.route("/.well-known/openid-configuration", methods=["GET"])
    def openid_metadata(self, request: IRequest) -> bytes:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        return json_body(
            request,
            openid_configuration(self._config, self.capabilities),
            no_store=False,
        )

    @app.handle_errors(OAuthError)
    def oauth_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Render a refusal, and audit it: every refusal is audited once, here
        (or by L{_answered} if the client hung up first).
        """
        error = failure.value
        assert isinstance(error, OAuthError)
        self._audit_refusal(request, error)
        return json_body(request, error.body(), error.status, error.headers)

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        return json_body(
            request, {"error": "not_found", "error_description": "no such resource"}, 404
        )

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, MethodNotAllowed)
        allowed = ", ".join(sorted(error.valid_methods or []))
        return json_body(
            request,
            {"error": "method_not_allowed", "error_description": f"use {allowed}"},
            405,
            {"Allow": allowed},
        )

    @app.handle_errors(Exception)
    def server_error(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("unhandled error answering {method} {path}", failure,
                    method=request.method, path=request.path)
        return json_body(
            request,
            {"error": "server_error", "error_description": "internal error"},
            500,
        )


def _basic(credentials: bytes) -> tuple[str, str]:
    """
    The client id and secret in Basic credentials: base64 of
    C{id:secret}, each form-encoded first (RFC 6749 section 2.3.1).
    """
    try:
        text = base64.b64decode(credentials, validate=True).decode("utf-8")
        client_id, colon, secret = text.partition(":")
        client_id = unquote_plus(client_id, errors="strict")
        secret = unquote_plus(secret, errors="strict")
    except (binascii.Error, ValueError):
        colon = ""
    if not colon or not client_id:
        raise errors.invalid_client("malformed Basic credentials", True)
    return client_id, secret


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("ascii")
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise errors.invalid_request("the form body is not valid UTF-8") from None
    except ValueError:
        raise errors.invalid_request(f"the body has more than {MAX_FIELDS} parameters") from None


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs)
    except UnicodeDecodeError:
        raise errors.invalid_request("the JSON body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise errors.invalid_request("the body is not valid JSON") from None
    if not isinstance(value, _Pairs):
        raise errors.invalid_request("the JSON body must be an object")
    if len(value) > MAX_FIELDS:
        raise errors.invalid_request(f"the body has more than {MAX_FIELDS} parameters")
    pairs = []
    for name, item in value:
        if item is None:
            continue
        if not isinstance(item, str):
            raise errors.invalid_request(f"the parameter {safe_text(name)} must be a string")
        try:
            # JSON escapes can spell a lone surrogate, which is no text at all.
            item.encode("utf-8")
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.invalid_request(f"the parameter {safe_text(name)} is not valid text") from None
        pairs.append((name, item))
    return pairs


class _Pairs(list[tuple[str, Any]]):
    """
    A JSON object as its list of pairs, so a repeated key is seen.
    """


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(items)
