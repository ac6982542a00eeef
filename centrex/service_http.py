"""The small HTTP face of a background process (the daemon, the CDR shipper): ``/metrics`` for
Prometheus, liveness and readiness, and the uvicorn server that serves it from the process's
own event loop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def health_app(
    title: str, registry: CollectorRegistry, checks: dict[str, Callable[[], Awaitable[bool]]]
) -> FastAPI:
    """``checks``: what must hold for the process to be ready (Asterisk connected, DB reachable)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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


async def serve_health(app: FastAPI, host: str, port: int, what: str, log: logging.Logger) -> None:
    """Serve ``app`` until cancelled; a port that cannot be bound is logged, never fatal: the
    process's real work (calls, CDRs) matters more than its metrics."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    try:
        await server.serve()
    except SystemExit:  # uvicorn's way of saying it could not bind
        log.error("%s: metrics and health not served: cannot listen on %s:%d", what, host, port)
