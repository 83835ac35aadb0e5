"""
Klein's resource, with a short way through for a route that answers at once.

Klein routes every request (its werkzeug map, its endpoints, its error
handlers). L{Router} only spares what Klein's own render does around a
route that returns its body at once (binding a werkzeug adapter, two
C{notifyFinish} Deferreds, the Deferred chain that writes the body): it
matches the path on an adapter bound once, calls the route, and writes the
bytes it returns. Anything else, a Deferred, a refusal raised, a path the
map does not match, takes Klein's own way, given what the route returned
rather than calling it twice.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from klein.resource import KleinResource

from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

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

    def render(self, request: IRequest) -> Any:
        postpath: list[bytes] = request.postpath
        try:
            rule, kwargs = self._adapter.match(
                "/" + b"/".join(postpath).decode("utf-8"), request.method.decode("ascii"), return_rule=True)
        except Exception:
            # Not matched (404, 405, a redirect): Klein's way, as it answers those.
            return super().render(request)
        result: object
        try:
            result = self._routes.execute_endpoint(rule.endpoint, request, **kwargs)
        except Exception:
            result = Failure()
        if type(result) is not bytes or request.finished or request._disconnected:  # type: ignore[attr-defined]
            setattr(request, _RESULT, result)
            return super().render(request)
        request.write(result)
        request.finish()
        return NOT_DONE_YET
