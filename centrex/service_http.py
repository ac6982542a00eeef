"""The small HTTP face of a background process (the daemon, the CDR shipper): ``/metrics`` for
Prometheus, liveness and readiness, and the uvicorn server that serves it from the process's
own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


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


@contextlib.asynccontextmanager
async def health_served(
    title: str,
    registry: CollectorRegistry,
    checks: dict[str, Callable[[], Awaitable[bool]]],
    *,
    host: str,
    port: int,
) -> AsyncIterator[None]:
    """``/metrics`` and health served on ``host:port`` (0: not served) while the block runs.

    A port that cannot be bound is logged, never fatal: the process's real work (calls, CDRs,
    bans) matters more than its metrics."""
    if not port:
        yield
        return
    server = uvicorn.Server(
        uvicorn.Config(
            health_app(title, registry, checks), host=host, port=port, log_level="warning",
            lifespan="off",
        )
    )  # fmt: skip
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's way of saying it could not bind
            log.error(
                "%s: metrics and health not served: cannot listen on %s:%d", title, host, port
            )

    task = asyncio.create_task(serve())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
