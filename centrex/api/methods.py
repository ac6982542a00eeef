"""A method the path does not have: 405 with every method it does have in ``Allow``.

Starlette answers 405 from the first route whose path matches, so ``Allow`` lists that route's
methods only (``GET /v1/tokens`` and ``POST /v1/tokens`` are two routes), and a fixed path
that a path parameter also matches (``PATCH /v1/lines/import`` is ``PATCH
/v1/lines/{line_id}`` with ``line_id="import"``) is routed to the other route and answers
422. This middleware answers first, from every route of the app: the fixed paths win over the
parametered ones, as they do when routing.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send


def allowed_methods(router: Router, scope: Scope) -> set[str] | None:
    """The methods of the routes matching ``scope``'s path; None when none matches."""
    matching = [
        route
        for route in router.routes
        if isinstance(route, Route)
        and route.methods
        and route.matches({**scope, "method": next(iter(route.methods))})[0] == Match.FULL
    ]
    if not matching:
        return None
    fixed = [route for route in matching if not route.param_convertors]
    return set().union(*(route.methods or set() for route in (fixed or matching)))


class MethodNotAllowed:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = allowed_methods(self.router, scope)
            if allowed is not None and scope["method"] not in allowed:
                response = JSONResponse(
                    {"detail": f"{scope['method']} is not a method of this path"},
                    status_code=405,
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
