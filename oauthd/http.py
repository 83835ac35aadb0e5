"""
The HTTP edge: Klein routes that parse requests, call the protocol layer and
render its answers as JSON.

Every response carries C{X-Content-Type-Options: nosniff}; OAuth responses
also carry C{Cache-Control: no-store}. Errors are JSON in the RFC 6749 section
5.2 shape; nothing, however malformed, is answered with an HTML page or a
traceback.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from oauthd.authority import Authority
from oauthd.config import Config
from oauthd.discovery import (
    Capabilities,
    authorization_server_metadata,
    openid_configuration,
)
from oauthd.errors import OAuthError

log = Logger()


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
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


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
        return self._inner.render(request)


class OAuthHTTP:
    """
    oauthd's HTTP API.

    @ivar capabilities: what is served, for the discovery documents.
    """

    app = Klein()

    def __init__(self, config: Config, authority: Authority) -> None:
        self._config = config
        self._authority = authority
        self.capabilities = Capabilities()

    def resource(self) -> IResource:
        return _Edge(self.app.resource())

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
        error = failure.value
        assert isinstance(error, OAuthError)
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
