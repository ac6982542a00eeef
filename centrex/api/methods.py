"""A method the path does not have: 405 with every method it does have in ``Allow``.

Starlette answers 405 from the first route whose path matches, so ``Allow`` lists that route's
methods only (``GET /v1/tokens`` and ``POST /v1/tokens`` are two routes), and a fixed path
that a path parameter also matches (``PATCH /v1/lines/import`` is ``PATCH
/v1/lines/{line_id}`` with ``line_id="import"``) is routed to the other route and answers
422. This middleware answers first, from the OpenAPI document (the paths a client is told
of): a fixed path wins over the parametered ones, as it does when routing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

_PARAMETER = re.compile(r"\{[^}/]+\}")


def path_methods(document: dict[str, Any]) -> list[tuple[re.Pattern[str], bool, frozenset[str]]]:
    """(the path's pattern, whether it is fixed, its methods) for each path of ``document``."""
    out = []
    for path, item in document.get("paths", {}).items():
        methods = {method.upper() for method in item if method != "parameters"}
        if "GET" in methods:
            methods.add("HEAD")  # Starlette answers HEAD wherever GET is
        out.append((re.compile(_template(path)), "{" not in path, frozenset(methods)))
    return out


def _template(path: str) -> str:
    parts, last = [], 0
    for found in _PARAMETER.finditer(path):
        parts += [re.escape(path[last : found.start()]), "[^/]+"]
        last = found.end()
    return "".join([*parts, re.escape(path[last:])])


def allowed_methods(
    paths: list[tuple[re.Pattern[str], bool, frozenset[str]]], path: str
) -> frozenset[str] | None:
    """The methods of ``path`` (a fixed path's, if one matches); None when no path matches."""
    matching = [(fixed, methods) for pattern, fixed, methods in paths if pattern.fullmatch(path)]
    if not matching:
        return None
    fixed = [methods for is_fixed, methods in matching if is_fixed]
    return frozenset().union(*(fixed or [methods for _, methods in matching]))


class MethodNotAllowed:
    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document  # the app's OpenAPI document, built at the first request
        self.paths: list[tuple[re.Pattern[str], bool, frozenset[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.paths is None:
                self.paths = path_methods(self.document())
            allowed = allowed_methods(self.paths, scope["path"])
            if allowed is not None and scope["method"] not in allowed:
                response = JSONResponse(
                    {"detail": f"{scope['method']} is not a method of this path"},
                    status_code=405,
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
