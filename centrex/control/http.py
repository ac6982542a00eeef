"""The daemon's own small HTTP face: ``/metrics`` for Prometheus, liveness and readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from centrex.metrics import DAEMON_REGISTRY


def health_app(checks: dict[str, Callable[[], Awaitable[bool]]]) -> FastAPI:
    """``checks``: what must hold for the daemon to be ready (Asterisk connected, DB reachable)."""
    app = FastAPI(title="centrex call control", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(DAEMON_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        results = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await check())
            except Exception:
                results[name] = False
        ok = all(results.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    return app
