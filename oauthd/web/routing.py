"""
Klein's resource, with a short way through for a route that gives its body.

Klein routes every request (its werkzeug map, its endpoints, its error
handlers). L{Router} only spares what Klein's own render does around a
route that gives bytes, at once or by a Deferred (binding a werkzeug
adapter per request, two C{notifyFinish} Deferreds, a chain of Deferreds
that writes the body, the three calls that lead to the route function): it
matches the path on an adapter bound once, calls the route function as
Klein would, and writes the bytes it gives; a client that hangs up first
has the route's Deferred cancelled, as Klein does. Anything else, a
refusal raised or failed, a path the map does not match, another kind of
answer, takes Klein's own way, given what the route gave rather than
calling it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from inspect import iscoroutine
from typing import Any

from klein import Klein
from klein._resource import route_metadata
from klein.resource import KleinResource

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

log = Logger()

_RESULT = "_oauthd_route_result"
"""
Where a request holds what its route returned, for Klein's render to pick up.
"""

_NOTHING = object()


class _Handed:
    """
    A Klein app whose C{execute_endpoint} gives what the route returned
    already, if the request holds it (a raised refusal is raised again, for
    Klein's error handlers); everything else is the app's own.
    """

    def __init__(self, app: Klein) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def execute_endpoint(self, endpoint: str, request: IRequest, *args: Any, **kwargs: Any) -> Any:
        held = request.__dict__.pop(_RESULT, _NOTHING)
        if held is _NOTHING:
            return self._app.execute_endpoint(endpoint, request, *args, **kwargs)
        if isinstance(held, Failure):
            held.raiseException()
        return held


class Router(KleinResource):
    """
    Klein's resource for C{app}, with the short way through described above.
    """

    def __init__(self, app: Klein) -> None:
        super().__init__(_Handed(app))  # type: ignore[arg-type]
        self._routes = app
        self._adapter = app.url_map.bind("localhost")
        # What a path without variables and a method matched: the path names
        # one rule, so it is matched once. Only a path spelled as its rule is
        # kept: at most one per rule and method however many are asked for.
        self._fixed: dict[tuple[bytes, bytes], tuple[str, Mapping[str, Any], int]] = {}
        # Each endpoint's route function, called as Klein's execute_endpoint
        # calls it (bound to the app's instance), found once.
        self._functions: dict[str, Callable[..., Any]] = {}

    def render(self, request: IRequest) -> Any:
        postpath: list[bytes] = request.postpath
        path = b"/".join(postpath)
        known = self._fixed.get((path, request.method))
        if known is not None:
            endpoint, kwargs, matched = known
        else:
            try:
                asked = "/" + path.decode("utf-8")
                rule, kwargs = self._adapter.match(asked, request.method.decode("ascii"), return_rule=True)
                endpoint = rule.endpoint
                matched = route_metadata(self._routes.endpoints[endpoint]).segment_count
            except Exception:
                # Not matched (404, 405, a redirect): Klein's way, as it answers those.
                return super().render(request)
            if rule.rule == asked:
                # The rule itself (no variables, no extra slashes werkzeug let by).
                self._fixed[(path, request.method)] = (endpoint, kwargs, matched)
        # The route sees the segments it matched moved to prepath, as Klein moves them.
        request.prepath.extend(postpath[:matched])
        request.postpath = postpath[matched:]
        result: object
        try:
            function = self._functions.get(endpoint)
            if function is None:
                function = self._functions[endpoint] = self._function(endpoint)
            result = function(request, **kwargs)
        except Exception:
            result = Failure()
        if request.finished or request._disconnected:  # type: ignore[attr-defined]
            return self._klein(request, result, matched)
        if type(result) is bytes:
            request.write(result)
            request.finish()
            return NOT_DONE_YET
        if isinstance(result, Deferred) or iscoroutine(result):
            self._later(request, ensureDeferred(result), matched)
            return NOT_DONE_YET
        return self._klein(request, result, matched)

    def _function(self, endpoint: str) -> Callable[..., Any]:
        """
        What Klein's C{execute_endpoint} calls for C{endpoint}, short of its
        wrappers: the route function, given the app's instance as Klein's
        wrapper gives it. Klein's own way for a branch route (its wrapper
        also sets the request's branch segments) or a wrapper that names no
        function.
        """
        wrapper = self._routes.endpoints[endpoint]
        function = getattr(wrapper, "__original__", None)
        branch = any("__rest__" in rule.arguments for rule in self._routes.url_map.iter_rules(endpoint))
        if function is None or branch:
            return partial(self._routes.execute_endpoint, endpoint)
        # What klein._app._call does with the instance.
        instance = self._routes._instance
        if instance is not None or getattr(function, "__klein_bound__", False):
            return partial(function, instance)
        return function  # type: ignore[no-any-return]

    def _klein(self, request: IRequest, result: object, matched: int) -> Any:
        """
        Render C{request} Klein's way, given what its route returned, with
        the C{matched} segments its route was given back to C{postpath}
        (Klein matches the path again, and moves them).
        """
        if matched:
            request.postpath = request.prepath[-matched:] + request.postpath
            del request.prepath[-matched:]
        setattr(request, _RESULT, result)
        return super().render(request)

    def _klein_later(self, request: IRequest, result: object, matched: int) -> None:
        """
        L{_klein}, once the render has returned: a body Klein's render
        returns (its refusal of a URL it cannot decode) is written here, as
        twisted.web would have written it.
        """
        body = self._klein(request, result, matched)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _later(self, request: IRequest, result: Deferred[Any], matched: int) -> None:
        """
        Write the body C{result} gives, as Klein would: cancelled if the
        client hangs up first; a failure, or anything but bytes, rendered
        Klein's way. (Bound methods given their arguments rather than
        closures: they are made and freed for every answer given later.)
        """
        gone = [False]
        request.notifyFinish().addBoth(_finished, result, gone)  # type: ignore[attr-defined]
        args = (request, matched, gone)
        result.addCallbacks(self._answer_later, self._fail_later, callbackArgs=args, errbackArgs=args)

    def _answer_later(self, body: object, request: IRequest, matched: int, gone: list[bool]) -> None:
        if gone[0]:
            return
        # Caught here rather than by an errback after this: one step fewer
        # on every answer given later.
        try:
            if type(body) is not bytes:
                self._klein_later(request, body, matched)
                return
            request.write(body)
            request.finish()
        except Exception:
            log.failure("writing the response to {path} failed", path=request.path)

    def _fail_later(self, failure: Failure, request: IRequest, matched: int, gone: list[bool]) -> None:
        if not gone[0]:
            try:
                self._klein_later(request, failure, matched)
            except Exception:
                log.failure("writing the response to {path} failed", path=request.path)
        elif not failure.check(CancelledError):
            log.failure("unhandled error after the client of {path} hung up", failure, path=request.path)


def _finished(outcome: object, result: Deferred[Any], gone: list[bool]) -> None:
    """
    The request of C{result} has finished, or its client hung up first:
    then C{result} is cancelled.
    """
    gone[0] = True
    if isinstance(outcome, Failure):
        result.cancel()
