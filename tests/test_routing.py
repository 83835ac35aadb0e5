"""
L{oauthd.web.routing.Router}: Klein's resource with a short way through;
every route is still called once and answered as Klein answers it.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from klein._decorators import bindable
from treq.testing import StubTreq

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from oauthd.web.routing import Router


class Refused(Exception):
    pass


class App:
    app = Klein()

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.later: Deferred[bytes] = Deferred()

    @app.route("/now", methods=["GET"])
    def now(self, request: IRequest) -> bytes:
        self.calls.append("now")
        return b"at once"

    @app.route("/later", methods=["GET"])
    def later_(self, request: IRequest) -> Deferred[bytes]:
        self.calls.append("later")
        return self.later

    @app.route("/text", methods=["GET"])
    def text(self, request: IRequest) -> str:
        self.calls.append("text")
        return "as text"

    @app.route("/item/<string:name>", methods=["GET"])
    def item(self, request: IRequest, name: str) -> bytes:
        self.calls.append(name)
        return name.encode()

    @app.route("/refuse", methods=["GET"])
    def refuse(self, request: IRequest) -> bytes:
        self.calls.append("refuse")
        raise Refused()

    @app.handle_errors(Refused)
    def refused(self, request: IRequest, failure: Failure) -> bytes:
        request.setResponseCode(403)
        return b"refused"


def _get(app: App, path: str) -> tuple[int, bytes]:
    treq = StubTreq(Router(app.app))
    got: list[Any] = []
    treq.get("http://example.com" + path).addCallback(
        lambda response: treq.content(response).addCallback(lambda body: got.append((response.code, body))))
    treq.flush()
    return got[0] if got else (0, b"")


def test_a_body_given_at_once_is_written() -> None:
    app = App()
    assert _get(app, "/now") == (200, b"at once")
    assert app.calls == ["now"]


def test_a_body_given_later_is_written_once_it_comes() -> None:
    app = App()
    app.later.callback(b"later")
    assert _get(app, "/later") == (200, b"later")
    assert app.calls == ["later"]


def test_other_answers_are_rendered_by_klein_with_the_route_called_once() -> None:
    app = App()
    assert _get(app, "/text") == (200, b"as text")
    assert app.calls == ["text"]


def test_a_raised_refusal_reaches_the_error_handler_with_the_route_called_once() -> None:
    app = App()
    assert _get(app, "/refuse") == (403, b"refused")
    assert app.calls == ["refuse"]


def test_an_unmatched_path_is_answered_by_klein() -> None:
    app = App()
    assert _get(app, "/nowhere")[0] == 404
    assert app.calls == []


class Paths:
    """
    Routes that answer with the request's C{prepath} and C{postpath}, as
    Klein leaves them for a route (the segments it matched, then the rest).
    """

    app = Klein()

    @staticmethod
    def _paths(request: IRequest) -> bytes:
        return b"|".join(b"/".join(path) for path in (request.prepath, request.postpath))

    @app.route("/one/two", methods=["GET"])
    def plain(self, request: IRequest) -> bytes:
        return self._paths(request)

    @app.route("/tree/", methods=["GET"], branch=True)
    def tree(self, request: IRequest) -> Deferred[bytes]:
        return succeed(self._paths(request))


def _paths_through(resource: Any, path: str) -> bytes:
    treq = StubTreq(resource)
    got: list[bytes] = []
    treq.get("http://example.com" + path).addCallback(treq.content).addCallback(got.append)
    treq.flush()
    return got[0]


def test_a_route_sees_prepath_and_postpath_as_klein_leaves_them() -> None:
    for path in ("/one/two", "/tree/", "/tree/a/b"):
        by_klein = _paths_through(Paths().app.resource(), path)
        assert _paths_through(Router(Paths().app), path) == by_klein, path


def test_a_later_answer_klein_refuses_to_route_is_still_written() -> None:
    """
    Klein refuses a host name that is not UTF-8 with a body its render
    returns rather than writes; given a route's failure later, that body is
    written, not dropped with the request left unanswered.
    """
    app = App()
    app.later.errback(Refused())
    treq = StubTreq(Router(app.app))
    got: list[Any] = []
    treq.get("http://example.com/later", headers={b"Host": [b"\xff"]}).addCallback(
        lambda response: treq.content(response).addCallback(lambda body: got.append((response.code, body))))
    treq.flush()
    assert got == [(400, b"Non-UTF-8 encoding in URL.")]


def test_each_request_is_routed_by_its_own_path_and_method() -> None:
    """
    A path without variables is matched once and then known; a path with
    one gives each request its own value; what matched nothing, or matched
    for another method, is not taken as known.
    """
    app = App()
    router = Router(app.app)
    treq = StubTreq(router)
    got: list[tuple[int, bytes]] = []

    def request(method: str, path: str) -> None:
        treq.request(method, "http://example.com" + path).addCallback(
            lambda response: treq.content(response).addCallback(lambda body: got.append((response.code, body))))
        treq.flush()

    for method, path in [("GET", "/now"), ("GET", "/now"), ("POST", "/now"), ("GET", "/item/a"),
                         ("GET", "/item/b"), ("GET", "/nowhere"), ("GET", "/now/")]:
        request(method, path)
    for name in range(20):
        request("GET", f"/item/{name}")
    for slashes in range(2, 6):
        request("GET", "/" * slashes + "now")
    assert [code for code, _ in got[:7]] == [200, 200, 405, 200, 200, 404, 404]
    assert [body for _, body in got[3:5]] == [b"a", b"b"]
    assert app.calls[:24] == ["now", "now", "a", "b", *map(str, range(20))]
    assert len(router._fixed) == 1


class Kinds:
    """
    Route functions of each kind Klein calls: a coroutine function, one
    marked bindable (given the instance, or None), on an app bound to an
    instance or not.
    """

    app = Klein()

    @app.route("/async", methods=["GET"])
    async def coroutine(self, request: IRequest) -> bytes:
        return b"async " + type(self).__name__.encode()

    @app.route("/bound", methods=["GET"])
    @bindable
    def bound(instance: Any, request: IRequest) -> bytes:
        return b"bound " + type(instance).__name__.encode()


unbound = Klein()


@unbound.route("/plain", methods=["GET"])
def plain(request: IRequest) -> bytes:
    return b"plain " + request.path


@unbound.route("/bound", methods=["GET"])
@bindable
def bound_to_none(instance: Any, request: IRequest) -> bytes:
    return b"bound " + repr(instance).encode()


def test_each_kind_of_route_function_is_called_as_klein_calls_it() -> None:
    for app, paths in ((Kinds().app, ("/async", "/bound")), (unbound, ("/plain", "/bound"))):
        for path in paths:
            by_klein = _paths_through(app.resource(), path)
            assert _paths_through(Router(app), path) == by_klein, path
            assert by_klein.endswith((b"Kinds", b"/plain", b"None")), by_klein
